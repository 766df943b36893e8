"""What every chat route does around the use case: authenticate, rate-limit, measure."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import StreamingResponse

from chat_api.bootstrap import Container
from chat_api.errors import ERROR_TABLE
from chat_api.inbound import bearer, language
from chat_api.limits import MinuteQuota, StreamSlots
from chat_api.metrics import GatewayMetrics
from domain.client_keys import ClientIdentity
from domain.errors import DomainError, ErrorKind
from domain.ports import StreamData
from domain.text import estimate_message_tokens
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult


@dataclass
class Gateway:
    """Per-process state shared by the chat routes (bounded: see each member)."""

    container: Container
    metrics: GatewayMetrics
    rate: MinuteQuota
    tokens: MinuteQuota
    streams: StreamSlots
    model_labels: frozenset[str] = field(default_factory=frozenset)

    async def admit(self, request: Request) -> ClientIdentity:
        client = await self.container.authenticate.execute(bearer(request))
        self.rate.take(client.key_id or "anonymous")
        return client

    def charge_tokens(self, cmd: ChatTurnCommand) -> None:
        """The per-minute token allowance: what the request sends plus what it may get back."""
        sent = estimate_message_tokens([*cmd.system, *(cmd.history or []), *cmd.new_messages])
        self.tokens.take(cmd.client.key_id or "anonymous", sent + (cmd.max_output_tokens or 0))

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

    def count_usage(self, result: ChatTurnResult) -> None:
        model, m = self.model_label(result.model), self.metrics
        m.tokens.labels("input", model).inc(result.usage.input_tokens)
        m.tokens.labels("cached_input", model).inc(result.usage.cached_input_tokens)
        m.tokens.labels("output", model).inc(result.usage.output_tokens)
        m.tokens.labels("reasoning", model).inc(result.usage.reasoning_tokens)
        if result.cost is not None:
            m.cost.labels(model, result.key_source.value).inc(float(result.cost.usd))

    async def open_stream(self, cmd: ChatTurnCommand, route: str,
                          started: float) -> tuple[AsyncIterator[StreamData | ChatTurnResult], StreamData | ChatTurnResult]:
        """Takes a stream slot and waits for the first event, so that refusals (budget,
        upstream errors before the first byte) are still plain HTTP errors."""
        slot = cmd.client.key_id or "anonymous"
        self.streams.acquire(slot)
        try:
            events = self.container.chat.stream(cmd)
            first = await anext(events)
        except BaseException:
            self.streams.release(slot)
            raise
        self.metrics.ttft.labels(route).observe(time.perf_counter() - started)
        return events, first

    def stream_response(self, cmd: ChatTurnCommand, route: str, started: float,
                        events: AsyncIterator[StreamData | ChatTurnResult], first: StreamData | ChatTurnResult,
                        render: Callable[[StreamData | ChatTurnResult], bytes | None],
                        render_error: Callable[[DomainError], bytes]) -> StreamingResponse:
        """SSE relayed as produced (no buffering); ``render`` turns each event into bytes to
        send (or None to skip it). Whatever ends the stream, the slot is given back."""
        async def relay() -> AsyncIterator[bytes]:
            self.metrics.open_streams.inc()
            status = 200
            event = first
            try:
                while True:
                    if isinstance(event, ChatTurnResult):
                        self.count_usage(event)
                    chunk = render(event)
                    if chunk:
                        yield chunk
                    if isinstance(event, ChatTurnResult):
                        return
                    event = await anext(events)
            except DomainError as error:
                status = ERROR_TABLE[error.kind].status
                yield render_error(error)
            finally:
                await events.aclose()  # type: ignore[attr-defined]
                self.streams.release(cmd.client.key_id or "anonymous")
                self.metrics.open_streams.dec()
                self.observe(route, status, cmd.model, started)

        return StreamingResponse(relay(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def refused(self, error: DomainError) -> None:
        if error.kind in (ErrorKind.BUDGET_EXCEEDED, ErrorKind.RATE_LIMITED):
            self.metrics.budget_rejections.labels(error.code).inc()


async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


__all__ = ["Gateway", "get_gateway", "language"]
