"""The composition root: ``make_app`` builds the monitor from settings and optional overrides."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from domain.adapters.sql.database import make_engine
from domain.ports import HostMetrics
from monitor import system_routes
from monitor.metrics_registry import build_registry
from monitor.psutil_host_metrics import PsutilHostMetrics
from monitor.settings import MonitorSettings


def make_app(settings: MonitorSettings | None = None, host_metrics: HostMetrics | None = None,
             engine: Engine | None = None, clock: Callable[[], float] | None = None) -> FastAPI:
    """The monitor app. Overrides (host metrics, engine, the cache's clock) are for tests; what
    the app builds itself it also starts and stops with its lifespan."""
    settings = settings or MonitorSettings()
    owned_host = None
    if host_metrics is None:
        host_metrics = owned_host = PsutilHostMetrics(settings.cpu_sample_seconds, disk_path=settings.disk_path)
    owns_engine = engine is None
    engine = engine or make_engine(settings.database_url, pool_size=2)
    registry = build_registry(settings, engine, host_metrics, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owned_host is not None:
            owned_host.start()
        try:
            yield
        finally:
            if owned_host is not None:
                owned_host.stop()
            if owns_engine:
                engine.dispose()

    app = FastAPI(title="LLM Server monitor", lifespan=lifespan)
    app.state.settings = settings
    app.state.host_metrics = host_metrics
    app.state.registry = registry
    app.include_router(system_routes.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["metrics"])
    def metrics() -> Response:  # sync: collectors query the database, so run in the threadpool
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
