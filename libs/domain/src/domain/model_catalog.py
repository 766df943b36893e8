"""The one list of models the gateway knows: the price catalogue plus the operator's extras.

Built once at startup and handed to whoever needs it (admission, ``/v1/models``, metric
labels), so "which models exist" has one answer.
"""
from __future__ import annotations

from collections.abc import Iterable

from domain.pricing import ModelPrice, PriceTable


class ModelCatalog:
    """What the operator allows: every priced model of the catalogue, plus ``extra`` models
    (fine-tunes, local models) that run unpriced.

    * ``allows(name)``: the name, or the family of a dated snapshot of it, is listed;
    * ``family_of(name)``: the listed name a request or an upstream answer belongs to
      (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``), None for anything unknown. Only real
      snapshot shapes resolve (see ``PriceTable.family_of``), so a caller cannot mint names;
    * ``listed()``: what ``/v1/models`` shows, sorted.

    It is also the ``PriceCatalog`` the use cases price with (unknown or extra → unpriced).
    """

    def __init__(self, prices: PriceTable, extra: Iterable[str] = ()) -> None:
        self._prices = prices
        self._extra = frozenset(m.strip() for m in extra if m.strip()) - frozenset(prices.prices)
        self._listed = tuple(sorted(frozenset(prices.prices) | self._extra))

    @classmethod
    def from_setting(cls, prices: PriceTable, extra_models: str) -> ModelCatalog:
        """``EXTRA_MODELS`` is a comma-separated list; blanks are ignored."""
        return cls(prices, extra_models.split(","))

    @property
    def version(self) -> str:
        return self._prices.version

    def price_of(self, model: str) -> ModelPrice | None:
        return self._prices.price_of(model)

    def family_of(self, model: str) -> str | None:
        if model in self._extra:
            return model
        return self._prices.family_of(model)

    def allows(self, model: str) -> bool:
        return self.family_of(model) is not None

    def models(self) -> Iterable[str]:
        return self._listed

    def listed(self) -> tuple[str, ...]:
        return self._listed

    def label(self, model: str | None) -> str:
        """A bounded metric label: the family, or ``other`` for anything unknown."""
        return (self.family_of(model) if model else None) or "other"
