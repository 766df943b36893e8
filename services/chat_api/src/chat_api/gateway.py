"""What every chat route does around the use case: authenticate, rate-limit, measure."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from chat_api.bootstrap import Container
from chat_api.inbound import bearer, language
from chat_api.limits import RateLimiter, StreamSlots
from chat_api.metrics import GatewayMetrics
from domain.client_keys import ClientIdentity
from domain.errors import DomainError, ErrorKind


@dataclass
class Gateway:
    """Per-process state shared by the chat routes (bounded: see each member)."""

    container: Container
    metrics: GatewayMetrics
    rate: RateLimiter
    streams: StreamSlots
    model_labels: frozenset[str] = field(default_factory=frozenset)

    async def admit(self, request: Request) -> ClientIdentity:
        client = await self.container.authenticate.execute(bearer(request))
        self.rate.check(client.key_id or "anonymous")
        return client

    def model_label(self, model: str | None) -> str:
        # Label values are bounded to the allowed models: a caller cannot mint series.
        return model if model in self.model_labels else "other"

    def observe(self, route: str, status: int, model: str | None, started: float,
                upstream_seconds: float | None = None) -> None:
        total = time.perf_counter() - started
        self.metrics.requests.labels(route, str(status), self.model_label(model)).inc()
        self.metrics.duration.labels(route).observe(total)
        if upstream_seconds is not None:
            self.metrics.upstream.labels(route).observe(upstream_seconds)
            self.metrics.overhead.labels(route).observe(max(0.0, total - upstream_seconds))

    def refused(self, error: DomainError) -> None:
        if error.kind in (ErrorKind.BUDGET_EXCEEDED, ErrorKind.RATE_LIMITED):
            self.metrics.budget_rejections.labels(error.code).inc()


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


__all__ = ["Gateway", "get_gateway", "language"]
