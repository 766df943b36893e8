"""The one request pipeline. Every endpoint, whatever its dialect, goes through ``serve``:

1. authenticate (before the body is read: a bad or missing key is a 401 whatever the body),
2. the per-minute request allowance,
3. read and parse the body (size, nesting, NFC) into the dialect's command, which carries
   the request's personal-data scanner (the key's ``pii_policy``, else ``PII_POLICY``): the
   use case passes every text it sends or stores through it, once, whatever the dialect,
4. the per-minute token allowance (chat turns),
5. the use case, at most once per Idempotency-Key (non-streamed answers), or the stream
   relay (a stream slot, the first event awaited so refusals stay HTTP errors),
6. metrics, key headers (``x-llm-pii-masked``: values masked) and the dialect's rendering
   of the result or the error.
7. one request-log entry with the status the client got (refusals included; a stream's
   when it ends).

Nothing raised on the way reaches the client as a bare 500: domain errors are rendered by
the dialect, anything else is logged in one line and rendered as ``internal_error``.
"""
from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from typing_extensions import TypeIs

from chat_api.auth_cache import CachedAuthenticator
from chat_api.bootstrap import UseCases
from chat_api.dialects.base import (
    Call,
    Dialect,
    DialectSettings,
    Failure,
    Metered,
    StreamingUseCase,
    UseCase,
    _conforms,
    is_metered,
    is_relayed,
    is_streaming,
    is_token_metered,
    is_validating,
)
from chat_api.errors import ERROR_TABLE, internal_error
from chat_api.idempotency import idempotency_key, run_once
from chat_api.inbound import bearer, checked, language, read_json
from chat_api.limits import MinuteQuota, StreamSlots
from chat_api.metrics import GatewayMetrics
from domain.adapters.sql.idempotency import SqlIdempotencyStore
from domain.client_keys import ClientIdentity
from domain.errors import DomainError, ErrorKind
from domain.model_catalog import ModelCatalog
from domain.pii import PiiGuard, PiiPolicy, PiiScanner
from domain.ports import Clock, RequestLog, StreamData
from domain.request_log import RequestLogEntry
from domain.use_cases.chat_turn import StreamOpened

log = logging.getLogger("chat_api.gateway")
ANONYMOUS_BEARER = "anonymous"  # what an SDK user sends as api_key where anonymous use is allowed

C = TypeVar("C")
R = TypeVar("R")


@runtime_checkable
class Identified(Protocol):
    """A command carrying the id the ledger and the conversation know the request by."""

    @property
    def request_id(self) -> str: ...


def _is_identified(obj: object) -> TypeIs[Identified]:
    return _conforms(obj, Identified)


@dataclass
class Visit:
    """What the request log needs of one request, filled in as the pipeline learns it."""

    route: str
    created_at: datetime
    started: float
    client_key_id: str | None = None
    request_id: str | None = None
    model: str | None = None
    result: Metered | None = None
    ttft_ms: int | None = None  # a stream's first event, from the request's start
    pii: PiiScanner | None = None  # what it found per kind goes in the entry (never a value)

    def learn(self, command: object, model: str | None) -> None:
        if _is_identified(command):
            self.request_id = command.request_id
        self.model = model


def one_line(error: BaseException) -> str:
    """An unexpected error as one log line: its type and where it was raised. Not its
    message: that may quote request content or a key."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(error).__name__}{where}"


@dataclass
class Gateway:
    """The pipeline and the per-process state it keeps (bounded: see each member)."""

    use_cases: UseCases
    authenticate: CachedAuthenticator
    idempotency: SqlIdempotencyStore
    clock: Clock
    models: ModelCatalog
    metrics: GatewayMetrics
    rate: MinuteQuota
    tokens: MinuteQuota
    streams: StreamSlots
    settings: DialectSettings
    max_body_bytes: int
    pii: PiiGuard
    keyless: ClientIdentity | None = None  # who a keyless caller of a ``keyless`` dialect is (else 401)
    request_log: RequestLog | None = None

    async def serve(self, request: Request, dialect: Dialect[C, R],
                    use_case: UseCase[C, R] | StreamingUseCase[C, R]) -> Response:
        started = time.perf_counter()
        body: dict[str, Any] | None = None
        command: C | None = None
        visit = Visit(dialect.route, self.clock.now(), started)
        scanner: PiiScanner | None = None
        try:
            token = bearer(request)
            if token == ANONYMOUS_BEARER:  # the SDKs refuse an empty api_key
                token = None
            if token is None and dialect.keyless and self.keyless is not None:
                client = self.keyless
            else:
                client = await self.authenticate.execute(token)
            visit.client_key_id = client.key_id
            scanner = visit.pii = self.pii.scanner(client.pii_policy)
            call = Call(dialect.route, client, language(request), started, request.headers,
                        request.path_params, self.settings, scanner, request.query_params,
                        request.client.host if request.client else None)
            self.rate.take(_slot(call))
            if dialect.reads_body:
                body = await read_json(request, self.max_body_bytes)  # kept as sent, for the error echo
                body = checked(body)
            command = dialect.parse(body or {}, call)
            visit.learn(command, dialect.model_of(command))
            if is_validating(use_case):
                use_case.validate(command)
            if is_token_metered(command):
                self.tokens.take(_slot(call), command.token_allowance())
            if body is not None and dialect.wants_stream(body):
                if not is_streaming(use_case):
                    raise TypeError(f"{type(use_case).__name__} cannot stream")
                return await self._stream(dialect, use_case, command, call, visit)
            checked_command = command

            async def answer() -> Response:
                result = await use_case.execute(checked_command)
                if is_metered(result):
                    visit.result = result
                response = dialect.render(result, checked_command, call)
                self._succeeded(dialect.route, result, response, started)
                response.headers.update(self._pii_found(call.pii))
                return response

            if dialect.idempotent and body is not None:
                response = await run_once(self.idempotency, self.clock, client, idempotency_key(request), body,
                                          answer)
            else:
                response = await answer()
            self._log(visit, response.status_code)  # a replayed answer is a request too
            return response
        except DomainError as error:
            if scanner is not None and error.kind is ErrorKind.PII_DETECTED:
                self._pii_found(scanner)
            return self._refused(dialect, error, request, started, body, command, visit)
        except Exception as unexpected:  # the last resort: the dialect's error shape, one log line
            log.error("%s %s failed: %s", request.method, dialect.route, one_line(unexpected))
            return self._refused(dialect, internal_error(), request, started, body, command, visit)

    # -- the steps ---------------------------------------------------------------------
    async def _stream(self, dialect: Dialect[C, R], use_case: StreamingUseCase[C, R], command: C,
                      call: Call, visit: Visit) -> Response:
        """SSE relayed as produced (no buffering). A stream slot is taken and the first event
        awaited first, so refusals (budget, upstream errors before the first byte) are still
        plain HTTP errors, and whose key pays and the upstream's headers go out with the
        response's headers. Whatever ends the stream, the slot is given back."""
        slot = _slot(call)
        self.streams.acquire(slot)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        try:
            events = use_case.stream(command)
            first = await anext(events)
            if isinstance(first, StreamOpened):
                headers.update(first.upstream_headers)
                headers.update(_key_headers(first))
                first = await anext(events)
        except BaseException:
            self.streams.release(slot)
            raise
        first_seconds = time.perf_counter() - call.started
        self.metrics.ttft.labels(call.route).observe(first_seconds)
        visit.ttft_ms = int(first_seconds * 1000)
        model = dialect.model_of(command)
        headers.update(self._pii_found(call.pii))

        async def relay() -> AsyncIterator[bytes]:
            self.metrics.open_streams.inc()
            status, error_code = 200, None
            event: StreamOpened | StreamData | R = first
            try:
                while True:
                    if isinstance(event, StreamOpened):  # only ever first: nothing to send
                        event = await anext(events)
                        continue
                    if is_metered(event):
                        self._count_usage(event)
                        visit.result = event
                    chunk = dialect.render_event(event, command, call)
                    if chunk:
                        yield chunk
                    if not isinstance(event, StreamData):
                        return
                    event = await anext(events)
            except DomainError as error:
                status, error_code = ERROR_TABLE[error.kind].status, error.code
                yield dialect.render_stream_error(error, command, call)
            except Exception as unexpected:  # after the first byte the status is sent: an error event
                log.error("stream on %s failed: %s", call.route, one_line(unexpected))
                status, error_code = 500, "internal_error"
                yield dialect.render_stream_error(internal_error(), command, call)
            finally:
                await events.aclose()
                self.streams.release(slot)
                self.metrics.open_streams.dec()
                self._observe(call.route, status, model, call.started)
                # The client got a 200 and then an error event: the log keeps the error's status.
                self._log(visit, status, error_code)

        return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)

    def _succeeded(self, route: str, result: object, response: Response, started: float) -> None:
        if is_relayed(result):
            response.headers.update(result.upstream_headers)
        if is_metered(result):
            self._count_usage(result)
            response.headers.update(_key_headers(result))
            self._observe(route, response.status_code, result.model, started, result.upstream_seconds)
        else:
            self._observe(route, response.status_code, None, started)

    def _refused(self, dialect: Dialect[C, R], error: DomainError, request: Request, started: float,
                 body: Mapping[str, Any] | None, command: C | None, visit: Visit) -> Response:
        if error.kind in (ErrorKind.BUDGET_EXCEEDED, ErrorKind.RATE_LIMITED):
            self.metrics.budget_rejections.labels(error.code).inc()
        response = dialect.render_error(error, Failure(language(request), started, body))
        self._observe(dialect.route, response.status_code, dialect.model_of(command) if command is not None else None,
                      started)
        self._log(visit, response.status_code, error.code)
        return response

    def _log(self, visit: Visit, status: int, error_code: str | None = None) -> None:
        """The request's one log entry. Never fails the request: the log's ``record`` only
        queues, and anything it raises is logged here."""
        if self.request_log is None:
            return
        result = visit.result
        try:
            self.request_log.record(RequestLogEntry(
                request_id=visit.request_id or "req_" + uuid.uuid4().hex, created_at=visit.created_at,
                route=visit.route, status=status, client_key_id=visit.client_key_id, error_code=error_code,
                model=result.model if result is not None else visit.model,
                key_source=result.key_source.value if result is not None else None,
                fallback_reason=result.fallback_reason.value if result is not None and result.fallback_reason else None,
                upstream=result.upstream if result is not None else None,
                latency_ms=int((time.perf_counter() - visit.started) * 1000),
                cost=result.cost if result is not None else None, ttft_ms=visit.ttft_ms,
                pii_counts={kind.value: n for kind, n in visit.pii.counts.items()} if visit.pii is not None else {}))
        except Exception as failed:
            log.warning("request log entry not recorded: %s", one_line(failed))

    def _pii_found(self, scanner: PiiScanner) -> dict[str, str]:
        """Counts what the request's scanner found (per kind, by what was done with it) and
        the header of a masked answer: how many values were replaced. Called once per
        request, after the scanner saw every text (a stream: before its first byte)."""
        if scanner.policy is PiiPolicy.OFF or not scanner.total:
            return {}
        action = "masked" if scanner.policy is PiiPolicy.MASK else "blocked"
        for kind, n in scanner.counts.items():
            self.metrics.pii.labels(kind.value, action).inc(n)
        return {"x-llm-pii-masked": str(scanner.total)} if scanner.policy is PiiPolicy.MASK else {}

    # -- metrics -----------------------------------------------------------------------
    def _observe(self, route: str, status: int, model: str | None, started: float,
                 upstream_seconds: float | None = None) -> None:
        total = time.perf_counter() - started
        # Label values are the catalogue's families: a caller cannot mint series.
        requests, duration, upstream, overhead = self.metrics.answered(route, status, self.models.label(model))
        requests.inc()
        duration.observe(total)
        if upstream_seconds is not None:
            upstream.observe(upstream_seconds)
            overhead.observe(max(0.0, total - upstream_seconds))

    def _count_usage(self, result: Metered) -> None:
        usage = result.usage
        inp, cached, out, reasoning, cost = self.metrics.usage(self.models.label(result.model),
                                                               result.key_source.value)
        inp.inc(usage.input_tokens)
        cached.inc(usage.cached_input_tokens)
        out.inc(usage.output_tokens)
        reasoning.inc(usage.reasoning_tokens)
        if result.cost is not None:
            cost.inc(float(result.cost.usd))


def _slot(call: Call) -> str:
    """Whose allowance a request draws on: its client key's, or, without one, its address's
    (anonymous callers cannot be told apart otherwise)."""
    return call.client.key_id or f"anonymous:{call.address}"


def _key_headers(result: Metered | StreamOpened) -> dict[str, str]:
    """Whose key paid and why; the cost when known (a stream's comes in its final event)."""
    headers = {"x-llm-key-source": result.key_source.value}
    if result.fallback_reason is not None:
        headers["x-llm-fallback-reason"] = result.fallback_reason.value
    if is_metered(result) and result.cost is not None:
        headers["x-llm-cost-usd"] = format(result.cost.usd_rounded(8), "f")
    return headers


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
