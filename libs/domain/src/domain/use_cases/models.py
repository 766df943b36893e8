"""ListModels: what a client may ask for."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from domain.errors import DomainError, NotFound
from domain.model_catalog import ModelCatalog
from domain.ports import Clock, LlmProvider

log = logging.getLogger("domain.models")


@dataclass(frozen=True, slots=True)
class ListModelsQuery:
    """No parameters: every client sees the same list. ``model`` names one model (retrieve)."""

    model: str | None = None


class ListModels:
    """The models a client can use: what the upstream serves that the operator allows (the
    priced catalogue, its dated snapshots and EXTRA_MODELS), sorted.

    * the upstream's list is cached for ``ttl`` seconds (the server key asks for it);
    * while the upstream cannot be asked (no server key, an error), the operator's own list
      is served, so listing never fails because the upstream is briefly away;
    * retrieving a model not in the list is a 404 ``model_not_found``.
    """

    def __init__(self, models: ModelCatalog, provider: LlmProvider | None = None, server_key: str | None = None,
                 clock: Clock | None = None, ttl: float = 300.0) -> None:
        self._models, self._provider, self._server_key, self._clock, self._ttl = models, provider, server_key, clock, ttl
        self._cached: tuple[str, ...] | None = None
        self._fetched_at = 0.0

    async def _listed(self) -> tuple[str, ...]:
        if self._provider is None or self._server_key is None or self._clock is None:
            return self._models.listed()
        now = self._clock.monotonic()
        if self._cached is not None and now - self._fetched_at < self._ttl:
            return self._cached
        try:
            served = await self._provider.list_models(self._server_key)
        except DomainError as error:  # keep serving: the last list, else the operator's
            log.warning("could not list the upstream's models: %s", error.code)
            return self._cached or self._models.listed()
        self._cached = tuple(sorted({m for m in served if self._models.allows(m)}))
        self._fetched_at = now
        return self._cached

    async def execute(self, query: ListModelsQuery) -> tuple[str, ...]:
        listed = await self._listed()
        if query.model is None:
            return listed
        if query.model not in listed:
            raise NotFound("model_not_found", field="model", model=query.model)
        return (query.model,)
