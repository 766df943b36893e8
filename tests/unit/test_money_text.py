"""The admin API's money text (JSON and CSV exports) is integer arithmetic for speed: it must
always give the same text as ``domain.money.Money``'s Decimal rounding."""
from __future__ import annotations

import random
from decimal import Decimal

from chat_api.admin.money_text import krw_formatter, usd_8
from domain.money import Money

_EDGES = [0, 1, 4, 5, -5, 15, 357_142, 357_143, 9_000_000_000, -123_456_789]


def test_export_krw_equals_money_krw() -> None:
    """Exports format KRW in integer arithmetic: the same text as ``Money.krw`` always."""
    rng = random.Random(7)
    for rate in (Decimal(1400), Decimal("1387.55"), Decimal("0.5"), Decimal("1333.3333")):
        krw = krw_formatter(rate)
        for nanos in [*_EDGES, *(rng.randint(-10**13, 10**13) for _ in range(5000))]:
            assert krw(nanos) == format(Money(nanos).krw(rate), "f"), (rate, nanos)


def test_usd_8_equals_money_usd_rounded() -> None:
    rng = random.Random(8)
    for nanos in [*_EDGES, *(rng.randint(-10**13, 10**13) for _ in range(5000))]:
        assert usd_8(nanos) == format(Money(nanos).usd_rounded(8), "f"), nanos
