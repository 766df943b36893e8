"""What every /v1 answer has, whatever produced it: an ``x-request-id``, OpenAI's error shape
for routes and methods that do not exist, and CORS for the operator's browser origins."""
from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat_api.dialects.openai_compat import json_response
from chat_api.errors import openai_error_body
from domain.errors import DomainError, InvalidInput
from domain.ports import PASSED_THROUGH_HEADERS

OPENAI_PREFIX = "/v1"
# Legacy endpoints the gateway does not serve (README: "Moving an existing client").
UNSUPPORTED = ("/v1/completions", "/v1/conversations")
# Request headers the official SDKs send from a browser; authorization is named explicitly
# (a "*" would not cover it).
CORS_HEADERS = ["authorization", "content-type", "accept", "accept-language", "idempotency-key", "x-session-id",
                "x-openai-api-key", "openai-organization", "openai-project", "openai-beta", "x-stainless-arch",
                "x-stainless-lang", "x-stainless-os", "x-stainless-package-version", "x-stainless-retry-count",
                "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
                "x-stainless-helper-method", "x-stainless-async", "x-stainless-poll-helper",
                "x-stainless-custom-poll-interval"]
EXPOSED_HEADERS = [*PASSED_THROUGH_HEADERS, "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
                   "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests",
                   "x-ratelimit-reset-tokens", "retry-after", "x-llm-key-source", "x-llm-fallback-reason",
                   "x-llm-cost-usd"]


def add_request_id(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Gives a /v1 answer's headers an ``x-request-id`` when they have none (the upstream's is
    kept): ``req_`` and 32 random hex digits. True when it added one."""
    if not path.startswith(OPENAI_PREFIX) or any(name.lower() == b"x-request-id" for name, _ in headers):
        return False
    headers.append((b"x-request-id", ("req_" + os.urandom(16).hex()).encode()))
    return True


class RequestIdMiddleware:
    """Every /v1 response carries ``x-request-id``: the upstream's when the answer relayed
    one, else a new one for this request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if add_request_id(scope["path"], headers):
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_request_id)


def _language(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "ko"


def _route_error(request: Request, status: int) -> DomainError:
    """As OpenAI answers them (``invalid_request_error``), with the gateway's stable codes."""
    path = request.url.path[:200]
    if status == 405:
        return InvalidInput("method_not_allowed", method=request.method, path=path)
    if any(path == p or path.startswith(p + "/") for p in UNSUPPORTED):
        return InvalidInput("unsupported_endpoint", path=path)
    return InvalidInput("route_not_found", method=request.method, path=path)


def install(app: FastAPI, cors_allow_origins: str) -> None:
    """The /v1 edge: request ids, OpenAI-shaped 404/405, CORS when origins are configured."""
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith(OPENAI_PREFIX) and exc.status_code in (404, 405):
            error = _route_error(request, exc.status_code)
            body = openai_error_body(error, _language(request))
            return json_response(body, exc.status_code, exc.headers)
        return await http_exception_handler(request, exc)  # FastAPI's own, elsewhere

    app.add_exception_handler(HTTPException, http_error)
    origins = [o.strip() for o in cors_allow_origins.split(",") if o.strip() and o.strip() != "*"]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=CORS_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=600)
    app.add_middleware(RequestIdMiddleware)

