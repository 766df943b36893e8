"""The FastAPI application factory."""
from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_api import openai_edge
from chat_api.admin import routes as admin
from chat_api.bootstrap import Container, bootstrap
from chat_api.dialects.base import DialectSettings
from chat_api.errors import error_headers, http_error, message_of
from chat_api.gateway import Gateway, one_line
from chat_api.hot_routes import GatewayApp, last_resort_response
from chat_api.inbound import language
from chat_api.limits import MinuteQuota, StreamSlots
from chat_api.log_redaction import install_redaction
from chat_api.metrics import GatewayMetrics
from chat_api.routes import openai as openai_routes
from chat_api.routes import ops, original
from chat_api.settings import ChatApiSettings
from domain.adapters.sql import ledger as ledger_sql
from domain.errors import DomainError, InvalidInput

log = logging.getLogger("chat_api")


async def sweep_stale_holds(c: Container) -> None:
    """Turns holds no ledger row settled (their replica died mid-request) into orphaned
    ledger rows charged at the held amount. Every replica sweeps; the database makes it
    exactly one row per hold."""
    loop = asyncio.get_running_loop()
    stale = timedelta(seconds=c.settings.stale_hold_seconds)
    every = min(60.0, max(0.5, c.settings.stale_hold_seconds / 4))
    while True:
        await asyncio.sleep(every)
        try:
            await loop.run_in_executor(c.executor, partial(ledger_sql.sweep_stale_holds, c.engine,
                                                               c.clock.now() - stale, tz=c.settings.tz))
        except Exception:  # the database may be away; try again next round
            log.warning("could not sweep stale budget holds", exc_info=True)


# The cyclic collector's first-generation threshold while serving (CPython's default: 700
# allocations). A request allocates a few thousand tracked objects that nearly all die by
# reference counting, so at 700 the collector ran every request or two, each time walking
# the objects of every request in flight (bench/README.md, "Levers").
GC_GEN0_THRESHOLD = 20_000


@dataclass
class _Settled:
    apps: int = 0  # serving in this process (tests run several)
    threshold: tuple[int, int, int] = (700, 10, 10)  # the collector's before the first
    lock: threading.Lock = field(default_factory=threading.Lock)  # TestClient runs lifespans in threads


_SETTLED = _Settled()


@contextmanager
def settled_heap() -> Iterator[None]:
    """While the app serves: what startup built (modules, the app, the container) is moved
    out of the collector's sight (``gc.freeze``: a full collection then walks only what was
    allocated since, not ~200,000 objects), and the first generation is collected less often.
    Undone when the last app of the process stops, so the objects of an app that stopped
    (tests start many) can be collected again."""
    with _SETTLED.lock:
        if _SETTLED.apps == 0:
            _SETTLED.threshold = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_GEN0_THRESHOLD, *_SETTLED.threshold[1:])
        _SETTLED.apps += 1
    try:
        yield
    finally:
        with _SETTLED.lock:
            _SETTLED.apps -= 1
            if _SETTLED.apps == 0:
                gc.set_threshold(*_SETTLED.threshold)
                gc.unfreeze()


async def supervise_ledger_writer(c: Container, metrics: GatewayMetrics, every: float = 1.0) -> None:
    """A ledger writer thread that died is restarted (and counted); /readyz is red meanwhile."""
    while True:
        await asyncio.sleep(every)
        if c.ledger.ensure_running():
            metrics.ledger_writer_restarts.inc()


def make_app(settings: ChatApiSettings | None = None, container: Container | None = None) -> FastAPI:
    """Builds the app; the container (database, upstream, use cases) is created at startup
    unless a test passes one."""
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_redaction()
        c = container or bootstrap(settings, on_retry=lambda reason: metrics.retries.labels(reason).inc())
        await c.start()
        if c.router is not None:
            c.router.observer = metrics  # per-upstream requests, errors, latency
        metrics.watch_upstreams(c.upstream_status)
        s = c.settings
        app.state.container = c
        app.state.gateway = Gateway(
            use_cases=c.use_cases, authenticate=c.authenticate, idempotency=c.idempotency, clock=c.clock,
            models=c.models, metrics=metrics, rate=MinuteQuota(s.rate_limit_per_minute),
            tokens=MinuteQuota(s.tokens_per_minute, "tokens"), streams=StreamSlots(s.max_concurrent_streams),
            settings=DialectSettings(max_prompt_chars=s.max_prompt_chars, max_messages=s.max_messages,
                                     reply_language_policy=s.reply_language_policy, usd_krw_rate=s.usd_krw_rate),
            max_body_bytes=s.max_body_bytes, request_log=c.request_log,
            pii=c.pii, keyless=c.keyless_original)
        background = [asyncio.create_task(sweep_stale_holds(c)),
                      asyncio.create_task(supervise_ledger_writer(c, metrics)),
                      asyncio.create_task(c.background.run(every=min(1.0, c.settings.background_poll_seconds))),
                      asyncio.create_task(c.alerts.run(s.alert_check_seconds))]
        try:
            with settled_heap():
                yield
        finally:
            for task in background:
                task.cancel()
            await c.aclose()

    # No OpenTelemetry here (metrics are Prometheus, /metrics): FastAPI would otherwise ask
    # the environment for a tracer, meter and logger provider on every request.
    app = GatewayApp(title="LLM Server", version="0.1.0", lifespan=lifespan,
                  description="OpenAI gateway: the original /api/v1/chat dialect and the OpenAI dialect.",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.include_router(original.router)
    app.include_router(openai_routes.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    app.add_middleware(LastResort)  # innermost; the chat routes (answered before the stack) have their own
    openai_edge.install(app, (settings or ChatApiSettings()).cors_allow_origins if container is None
                        else container.settings.cors_allow_origins)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: DomainError) -> Response:
        mapped = http_error(error)
        body = {"detail": {"code": error.code, "message": message_of(error, language(request)), "field": error.field}}
        return Response(orjson.dumps(body), status_code=mapped.status, media_type="application/json",
                        headers=error_headers(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        """FastAPI-validated input (the admin API's bodies and query strings): the same
        bilingual {code, message, field} shape as every other error."""
        first = error.errors()[0] if error.errors() else {}
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        invalid = InvalidInput("invalid_field", field=field, reason="invalid", detail=str(first.get("msg", "")))
        body = {"detail": {"code": invalid.code, "message": message_of(invalid, language(request)), "field": field}}
        return Response(orjson.dumps(body), status_code=422, media_type="application/json")

    return app


class LastResort:
    """The last resort for routes outside the pipeline (admin, ops): an error nobody planned
    for is answered in the OpenAI error shape with no detail (unless the answer had started)
    and logged in one line. A middleware, not an exception handler: Starlette hands an
    ``Exception`` handler's error back to the server after answering, and uvicorn logs its
    whole traceback, with whatever the failed call held (a statement's parameters)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            request = Request(scope)
            log.error("%s %s failed: %s", request.method, request.url.path, one_line(error))
            if not started:
                await last_resort_response(request)(scope, receive, send)
