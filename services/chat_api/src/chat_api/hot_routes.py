"""The chat routes served straight from ASGI, before any middleware.

Every request of these routes goes to ``Gateway.serve`` and nothing else: no path
parameters, no dependencies, no FastAPI validation (the dialect reads the body), and
``serve`` renders every error itself. Going through the router costs, per request, the
match against every route, FastAPI's request wrapper and dependency resolution and its
exception middleware; going through Starlette's middleware stack (error guard, FastAPI's
telemetry and body-limit layers, the edge's request ids) costs a coroutine frame per layer,
resumed at every await of the request, and a ``send`` wrapper per layer (bench/README.md,
"Levers"). So ``GatewayApp`` answers them itself, first, doing here what those layers would
have done for them:

* the ``x-request-id`` of the /v1 edge (``openai_edge.RequestIdMiddleware``): the
  upstream's when the answer relays one, else a new one;
* the last-resort error guard (Starlette's ``ServerErrorMiddleware`` with the app's
  ``Exception`` handler): ``serve`` answers every failure of its own, so this is for one
  while sending the answer: logged in one line and, if nothing was sent yet, answered with
  ``last_resort_response`` (else the server closes the connection);
* the body limit is ``serve``'s own (``MAX_BODY_BYTES``, ``inbound.read_json``); FastAPI's
  is not configured.

A request with an ``Origin`` header (a browser: CORS, when configured, must see it), a
mounted app (``root_path``) or another path or method takes the whole stack; the routes
stay declared in the router for the OpenAPI document and are reached there.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chat_api.dialects.base import Dialect
from chat_api.dialects.chat_completions import CHAT_COMPLETIONS
from chat_api.dialects.original import CHAT, CHAT_STREAM
from chat_api.dialects.responses import RESPONSES
from chat_api.errors import internal_error, message_of
from chat_api.gateway import Gateway, one_line
from chat_api.inbound import language
from chat_api.openai_edge import add_request_id

log = logging.getLogger("chat_api")
_Route = tuple[Dialect[Any, Any], Callable[[Gateway], Any]]


def _chat(gw: Gateway) -> Any:
    return gw.use_cases.chat


HOT: dict[tuple[str, str], _Route] = {
    ("POST", "/v1/chat/completions"): (CHAT_COMPLETIONS, _chat),
    ("POST", "/v1/responses"): (RESPONSES, _chat),
    ("POST", "/api/v1/chat"): (CHAT, _chat),
    ("POST", "/api/v1/chat/stream"): (CHAT_STREAM, _chat),
}


def last_resort_response(request: Request) -> Response:
    """A failure nobody planned for: the OpenAI error shape, no detail."""
    body = {"error": {"message": message_of(internal_error(), language(request)), "type": "api_error",
                      "param": None, "code": "internal_error"}}
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


def _hot(scope: Scope) -> _Route | None:
    if scope["type"] != "http" or scope.get("root_path"):
        return None
    route = HOT.get((scope["method"], scope["path"]))
    if route is None or any(name == b"origin" for name, _ in scope["headers"]):
        return None
    return route


class GatewayApp(FastAPI):
    """The FastAPI app, with the chat routes answered before its middleware stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _hot(scope)
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive)
        try:
            gateway: Gateway = self.state.gateway
            dialect, use_case = route
            response = await gateway.serve(request, dialect, use_case(gateway))
            add_request_id(scope["path"], response.raw_headers)
            await response(scope, receive, send)
        except Exception as unexpected:
            log.error("%s %s failed: %s", scope["method"], scope["path"], one_line(unexpected))
            fallback = last_resort_response(request)
            add_request_id(scope["path"], fallback.raw_headers)  # every /v1 answer carries one, a 500 too
            with suppress(RuntimeError):  # an answer had started: the server closes the connection
                await fallback(scope, receive, send)
