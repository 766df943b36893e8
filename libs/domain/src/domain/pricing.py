"""Prices and the price catalogue.

A catalogue maps model families to USD-per-1M-token prices. Dated snapshot names that the
upstream returns (``gpt-4o-mini-2024-07-18``) resolve to their family unless the snapshot is
priced itself (``gpt-4o-2024-05-13``). Only real snapshot shapes resolve: a ``-YYYY-MM-DD``
suffix, or a dated name the catalogue lists for its family (``gpt-4-0613``); any other
suffix (``gpt-4o-mini-9999``, ``o3-1234``) is a different, unknown model. A model the
catalogue does not know is *unpriced*: never priced as another model.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from domain.money import NANOS_PER_USD, Money
from domain.usage import TokenUsage

_SNAPSHOT_SUFFIX = re.compile(r"-20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_PER = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens. ``cached_input`` None means the model has no cache discount, so
    cached tokens (if any are ever reported) bill at the input rate."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    max_output_tokens: int = 16_384

    def cost(self, usage: TokenUsage) -> Money:
        """Exact cost of one request, rounded once to a nano-USD."""
        cached_rate = self.input if self.cached_input is None else self.cached_input
        usd_times_million = (
            usage.uncached_input_tokens * self.input
            + usage.cached_input_tokens * cached_rate
            + usage.output_tokens * self.output
        )
        nanos = usd_times_million * NANOS_PER_USD / _PER
        return Money(int(nanos.to_integral_value(rounding=ROUND_HALF_UP)))

    def worst_case(self, input_tokens: int, max_output_tokens: int) -> Money:
        """The most a request can cost: every input token uncached, every output token used."""
        return self.cost(TokenUsage(input_tokens=input_tokens, output_tokens=max_output_tokens))


@dataclass(frozen=True)
class PriceTable:
    """A versioned, immutable price catalogue (implements the ``PriceCatalog`` port).

    ``upstream_prices`` are optional overrides per upstream (an Azure deployment may cost
    other than OpenAI): a request is costed at the price where it was served. Without an
    upstream, a model priced only at some upstreams is priced at the dearest of them, so
    that admission's worst case is never below what the request may cost. The snapshot rules
    are the same in every table.
    """

    version: str
    prices: Mapping[str, ModelPrice]
    snapshots: Mapping[str, str] = field(default_factory=dict)  # dated name → family, as listed
    upstream_prices: Mapping[str, Mapping[str, ModelPrice]] = field(default_factory=dict)

    def _family_in(self, prices: Mapping[str, ModelPrice], model: str) -> str | None:
        if model in prices:
            return model
        listed = self.snapshots.get(model)
        if listed is not None:
            return listed if listed in prices else None
        family = _SNAPSHOT_SUFFIX.sub("", model)
        return family if family != model and family in prices else None

    def _lookup(self, prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
        family = self._family_in(prices, model)
        return None if family is None else prices[family]

    def price_of(self, model: str, upstream: str | None = None) -> ModelPrice | None:
        if upstream is not None and upstream in self.upstream_prices:
            price = self._lookup(self.upstream_prices[upstream], model)
            if price is not None:
                return price
        price = self._lookup(self.prices, model)
        if price is None and upstream is None and self.upstream_prices:
            found = [p for table in self.upstream_prices.values() if (p := self._lookup(table, model)) is not None]
            return max(found, key=lambda p: (p.input + p.output, p.max_output_tokens)) if found else None
        return price

    def worst_price_of(self, model: str) -> ModelPrice | None:
        """What admission may hold at: each rate at its dearest over the catalogue's price and
        every upstream's override, so the worst case covers whichever upstream serves the
        request (the router picks it after admission). None: unpriced everywhere."""
        found = [p for table in (self.prices, *self.upstream_prices.values())
                 if (p := self._lookup(table, model)) is not None]
        if len(found) <= 1:
            return found[0] if found else None
        cached = [p.input if p.cached_input is None else p.cached_input for p in found]
        return ModelPrice(input=max(p.input for p in found), output=max(p.output for p in found),
                          cached_input=max(cached), max_output_tokens=max(p.max_output_tokens for p in found))

    def family_of(self, model: str) -> str | None:
        for table in (self.prices, *self.upstream_prices.values()):
            family = self._family_in(table, model)
            if family is not None:
                return family
        return None

    def models(self) -> Iterable[str]:
        return sorted({*self.prices, *(m for t in self.upstream_prices.values() for m in t)})

    def cost(self, model: str, usage: TokenUsage) -> Money | None:
        price = self.price_of(model)
        return None if price is None else price.cost(usage)
