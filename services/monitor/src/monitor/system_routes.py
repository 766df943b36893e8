"""The original ``/api/v1/system/*`` routes, same bodies.

Error table (this entrypoint's only one): when a host collector fails, every route that needs
it answers **503** with ``{"status": "unhealthy", "timestamp", "error"}``, so load balancers
and probes see the failure in the status code as well as the body, and never a 500 traceback.
``/health`` is liveness only (the process answers) and is always 200.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from domain.ports import HostMetrics

log = logging.getLogger(__name__)
GIB = 1024**3

router = APIRouter(prefix="/api/v1/system", tags=["system"])


async def _host(request: Request) -> HostMetrics:  # async: a plain def would cost a thread hop
    host: HostMetrics = request.app.state.host_metrics
    return host


Host = Annotated[HostMetrics, Depends(_host)]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _unhealthy(exc: Exception) -> JSONResponse:
    log.warning("host metrics unavailable: %s", exc, exc_info=exc)
    return JSONResponse(status_code=503,
                        content={"status": "unhealthy", "timestamp": _now(), "error": str(exc) or type(exc).__name__})


# Routes are plain ``def``: psutil reads are blocking calls, so they run in the threadpool and
# never stall the event loop.
@router.get("/status")
def status(host: Host) -> Any:
    try:
        snap = host.snapshot()
    except Exception as exc:
        return _unhealthy(exc)
    return {
        "status": "healthy",
        "timestamp": _now(),
        "cpu_usage": snap.cpu_percent,
        "memory_usage": snap.memory_percent,
        "memory_available_gb": round(snap.memory_available_bytes / GIB, 2),
    }


@router.get("/info")
def info(host: Host) -> Any:
    try:
        sections = host.info()
    except Exception as exc:
        return _unhealthy(exc)
    return {"timestamp": _now(), **sections}


def _section(host: HostMetrics, key: str) -> Any:
    try:
        return {"timestamp": _now(), key: host.info()[key]}
    except Exception as exc:
        return _unhealthy(exc)


@router.get("/cpu")
def cpu(host: Host) -> Any:
    return _section(host, "cpu")


@router.get("/memory")
def memory(host: Host) -> Any:
    return _section(host, "memory")


@router.get("/disk")
def disk(host: Host) -> Any:
    return _section(host, "disk")


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy", "service": "LLM Server", "timestamp": _now()}
