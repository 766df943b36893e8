"""Money as integer nano-USD.

Prices are published in USD per 1M tokens with up to three decimals (e.g. 0.005), so one
token costs a whole number of nano-USD: integer arithmetic is exact and never drifts the
way floats do. Rounding happens once, when a figure is shown in a coarser unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

NANOS_PER_USD = 1_000_000_000
NANOS_PER_MILLICENT = 10_000  # a millicent is 1e-5 USD, the original API's `cost` unit


@dataclass(frozen=True, order=True, slots=True)
class Money:
    """An amount in USD held as integer nano-USD."""

    nanos: int = 0

    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def from_usd(cls, usd: Decimal | str | int) -> Money:
        """Exact conversion; a value finer than a nano-USD is rounded half up once."""
        value = Decimal(usd) * NANOS_PER_USD
        return cls(int(value.to_integral_value(rounding=ROUND_HALF_UP)))

    def __add__(self, other: Money) -> Money:
        return Money(self.nanos + other.nanos)

    def __sub__(self, other: Money) -> Money:
        return Money(self.nanos - other.nanos)

    @property
    def usd(self) -> Decimal:
        return Decimal(self.nanos) / NANOS_PER_USD

    @property
    def millicents(self) -> int:
        """The original API's integer `cost`: 1e-5 USD, rounded half up."""
        return int((Decimal(self.nanos) / NANOS_PER_MILLICENT).to_integral_value(rounding=ROUND_HALF_UP))

    def krw(self, usd_krw_rate: Decimal) -> Decimal:
        """KRW at the given rate, to two decimals (display currency only)."""
        return (self.usd * usd_krw_rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def usd_rounded(self, places: int = 8) -> Decimal:
        return self.usd.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
