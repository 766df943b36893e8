"""The chat routes served straight from ASGI.

Every request of these routes goes to ``Gateway.serve`` and nothing else: no path
parameters, no dependencies, no FastAPI validation (the dialect reads the body), and
``serve`` renders every error itself. Going through the router costs, per request, the
match against every route, FastAPI's request wrapper and dependency resolution and its
exception middleware: about a tenth of the gateway's CPU on /v1/chat/completions
(bench/README.md, "Levers"). This middleware sits inside the edge's (request ids, CORS),
so what a client gets is the same; the routes stay declared in the router for the OpenAPI
document and are reached there whenever the path or method differs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_api.dialects.base import Dialect
from chat_api.dialects.chat_completions import CHAT_COMPLETIONS
from chat_api.dialects.original import CHAT, CHAT_STREAM
from chat_api.dialects.responses import RESPONSES
from chat_api.gateway import Gateway

_Route = tuple[Dialect[Any, Any], Callable[[Gateway], Any]]


def _chat(gw: Gateway) -> Any:
    return gw.use_cases.chat


HOT: dict[tuple[str, str], _Route] = {
    ("POST", "/v1/chat/completions"): (CHAT_COMPLETIONS, _chat),
    ("POST", "/v1/responses"): (RESPONSES, _chat),
    ("POST", "/api/v1/chat"): (CHAT, _chat),
    ("POST", "/api/v1/chat/stream"): (CHAT_STREAM, _chat),
}


class HotRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = HOT.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" \
            and not scope.get("root_path") else None
        if route is None:
            await self.app(scope, receive, send)
            return
        gateway: Gateway = scope["app"].state.gateway
        dialect, use_case = route
        response = await gateway.serve(Request(scope, receive), dialect, use_case(gateway))
        await response(scope, receive, send)
