"""ListModels: what a client may ask for."""
from __future__ import annotations

from dataclasses import dataclass

from domain.model_catalog import ModelCatalog


@dataclass(frozen=True, slots=True)
class ListModelsQuery:
    """No parameters: every client sees the same list."""


class ListModels:
    """Every model the operator allows (the priced catalogue and EXTRA_MODELS), sorted."""

    def __init__(self, models: ModelCatalog) -> None:
        self._models = models

    async def execute(self, query: ListModelsQuery) -> tuple[str, ...]:
        return self._models.listed()
