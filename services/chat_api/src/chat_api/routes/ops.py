"""Health, readiness and Prometheus metrics of this process."""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from chat_api.deps import ContainerDep
from chat_api.gateway import Gateway, get_gateway

router = APIRouter(tags=["ops"])
GatewayDep = Annotated[Gateway, Depends(get_gateway)]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(container: ContainerDep) -> JSONResponse:
    """Ready to serve: the database answers, its schema is at the migrations' head, and the
    ledger writer runs."""
    if not container.ledger.alive:
        return JSONResponse({"status": "unavailable", "ledger_writer": "down"}, status_code=503)
    expected = container.schema_head

    def check() -> str | None:
        with container.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    try:
        current = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(container.executor, check), 3)
    except Exception as exc:  # any failure means not ready; the reason is in the body
        return JSONResponse({"status": "unavailable", "database": "down", "error": type(exc).__name__},
                            status_code=503)
    if expected and current != expected:
        return JSONResponse({"status": "unavailable", "database": "up", "schema": current, "expected": expected},
                            status_code=503)
    return JSONResponse({"status": "ready", "database": "up", "schema": current,
                         "ledger_spool": container.ledger.spool_size()})


@router.get("/metrics")
async def metrics(gw: GatewayDep, container: ContainerDep) -> Response:
    m = gw.metrics
    m.ledger_queue.set(container.ledger.pending())
    m.ledger_spool.set(container.ledger.spooled)
    m.ledger_writer_up.set(1 if container.ledger.alive else 0)
    m.ledger_set_aside.set(container.ledger.set_aside)
    m.auth_cache.set(len(container.authenticate))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
