"""Money as the admin API and its CSV exports write it: decimal text, USD to 8 places and KRW
at the configured rate to 2, both rounded half up like ``domain.money.Money`` — in integer
arithmetic, since an export formats two figures per row."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal


def usd_8(nanos: int) -> str:
    """Nano-USD as USD to 8 decimals, rounded half up (as ``Money.usd_rounded(8)``), fast."""
    sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
    tenths = (n + 5) // 10
    return f"{sign}{tenths // 100_000_000}.{tenths % 100_000_000:08d}"


def krw_formatter(rate: Decimal) -> Callable[[int], str]:
    """Nano-USD to KRW text at ``rate``, 2 decimals, half up, as ``Money.krw`` — in integer
    arithmetic, since an export formats one per row."""
    p, q = rate.as_integer_ratio()
    den = q * 10**9

    def krw(nanos: int) -> str:
        sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
        cents = (2 * n * p * 100 + den) // (2 * den)
        return f"{sign}{cents // 100}.{cents % 100:02d}"

    return krw
