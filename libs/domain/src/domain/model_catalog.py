"""The one list of models the gateway knows: the price catalogue plus the operator's extras,
narrowed to what the upstreams serve.

Built once at startup and handed to whoever needs it (admission, ``/v1/models``, metric
labels), so "which models exist" has one answer.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable

from domain.pricing import ModelPrice, PriceTable


class ModelCatalog:
    """What the operator allows: every priced model of the catalogue (per-upstream prices
    included), plus ``extra`` models (fine-tunes, local models) that run unpriced; when
    ``served`` is given (the public names the upstreams serve), only those of them.

    * ``allows(name)``: the name, or the family of a dated snapshot of it, is listed;
    * ``family_of(name)``: the listed name a request or an upstream answer belongs to
      (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``), None for anything unknown or not
      served. Only real snapshot shapes resolve (see ``PriceTable.family_of``), so a caller
      cannot mint names;
    * ``listed()``: what ``/v1/models`` shows, sorted.

    It is also the ``PriceCatalog`` the use cases price with (unknown or extra → unpriced).
    """

    def __init__(self, prices: PriceTable, extra: Iterable[str] = (), served: Collection[str] | None = None) -> None:
        self._prices = prices
        priced = frozenset(prices.models())
        self._extra = frozenset(m.strip() for m in extra if m.strip()) - priced
        allowed = priced | self._extra
        self._allowed = allowed if served is None else allowed & frozenset(served)
        self._listed = tuple(sorted(self._allowed))

    @classmethod
    def from_setting(cls, prices: PriceTable, extra_models: str, served: Collection[str] | None = None) -> ModelCatalog:
        """``EXTRA_MODELS`` is a comma-separated list; blanks are ignored."""
        return cls(prices, extra_models.split(","), served)

    @property
    def version(self) -> str:
        return self._prices.version

    def price_of(self, model: str, upstream: str | None = None) -> ModelPrice | None:
        return self._prices.price_of(model, upstream)

    def worst_price_of(self, model: str) -> ModelPrice | None:
        """The price admission holds at: the dearest the request may be served at."""
        return self._prices.worst_price_of(model)

    def family_of(self, model: str) -> str | None:
        family = model if model in self._extra else self._prices.family_of(model)
        return family if family in self._allowed else None

    def allows(self, model: str) -> bool:
        return self.family_of(model) is not None

    def models(self) -> Iterable[str]:
        return self._listed

    def extra(self) -> tuple[str, ...]:
        """The operator's ``EXTRA_MODELS`` (outside the catalogue: unpriced), sorted."""
        return tuple(sorted(self._extra))

    def listed(self) -> tuple[str, ...]:
        return self._listed

    def label(self, model: str | None) -> str:
        """A bounded metric label: the family, or ``other`` for anything unknown."""
        return (self.family_of(model) if model else None) or "other"
