"""One request-log entry per client request, written by an ASGI middleware around the chat
routes — so refusals that never reach the pipeline (401, 413, a 400 from the parser, 429 from
a limiter) are logged like everything else, with the status the client actually got.

The pipeline adds what only it knows by filling ``request.state.request_log`` (a dict; any of
``request_id``, ``client_key_id``, ``model``, ``key_source``, ``fallback_reason``,
``upstream``, ``cost`` (a ``Money``), ``error_code``). Without it, the entry still has the
route, status, latency, the ``x-request-id`` answered and the error code read from the error
body. A stream is logged when its last byte is sent (or the client goes away).
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.money import Money
from domain.ports import RequestLog
from domain.request_log import RequestLogEntry

log = logging.getLogger(__name__)

STATE_KEY = "request_log"
CHAT_PREFIXES = ("/api/v1/chat", "/v1/")
_MAX_ERROR_BODY = 65_536


def _error_code(body: bytes) -> str | None:
    """The stable code of an error body in either dialect ({"error": {"code"}}, the original
    {"error": ..., "code"} or the admin {"detail": {"code"}})."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for holder in (data.get("error"), data.get("detail"), data):
        if isinstance(holder, dict) and isinstance(holder.get("code"), str):
            return holder["code"]
    return None


class RequestLogMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: streams pass through untouched)."""

    def __init__(self, app: ASGIApp, request_log: Callable[[], RequestLog | None],
                 now: Callable[[], datetime], *, prefixes: tuple[str, ...] = CHAT_PREFIXES) -> None:
        self.app, self._log, self._now, self._prefixes = app, request_log, now, prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self._prefixes):
            await self.app(scope, receive, send)
            return
        started, created_at = time.perf_counter(), self._now()
        seen: dict[str, Any] = {"status": None, "request_id": None, "body": b"", "done": False}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-request-id":
                        seen["request_id"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                if (seen["status"] or 0) >= 400 and len(seen["body"]) < _MAX_ERROR_BODY:
                    seen["body"] += message.get("body", b"")[:_MAX_ERROR_BODY]
                if not message.get("more_body", False):
                    await send(message)
                    self._record(scope, seen, started, created_at)
                    return
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if seen["status"] is None:  # the app's last-resort handler answers outside this wrapper
                seen["status"], seen["error_code"] = 500, "internal_error"
            raise
        finally:
            self._record(scope, seen, started, created_at)

    def _record(self, scope: Scope, seen: dict[str, Any], started: float, created_at: datetime) -> None:
        if seen["done"]:
            return
        seen["done"] = True
        request_log = self._log()
        if request_log is None:
            return
        try:
            fields: dict[str, Any] = dict((scope.get("state") or {}).get(STATE_KEY) or {})
            status = int(seen["status"] or 499)  # no answer started: the client went away
            cost = fields.get("cost")
            request_log.record(RequestLogEntry(
                request_id=str(fields.get("request_id") or seen["request_id"] or uuid.uuid4().hex),
                created_at=created_at, route=scope["path"], status=status,
                client_key_id=fields.get("client_key_id"),
                error_code=fields.get("error_code") or seen.get("error_code")
                or (_error_code(seen["body"]) if status >= 400 else None),
                model=fields.get("model"), key_source=fields.get("key_source"),
                fallback_reason=fields.get("fallback_reason"), upstream=fields.get("upstream"),
                latency_ms=int((time.perf_counter() - started) * 1000),
                cost=cost if isinstance(cost, Money) else None))
        except Exception:  # logging a request must never fail it
            log.warning("request log entry not recorded", exc_info=True)
