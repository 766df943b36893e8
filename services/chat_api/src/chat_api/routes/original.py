"""POST /api/v1/chat and /api/v1/chat/stream: the original dialect."""
from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chat_api.dialects.original import OriginalChatRequest, error_body, parse_request, success_body, to_command
from chat_api.errors import error_headers, http_error
from chat_api.gateway import Gateway, get_gateway
from chat_api.idempotency import idempotency_key, run_once
from chat_api.inbound import checked, language, read_json
from domain.client_keys import ClientIdentity
from domain.errors import DomainError
from domain.ports import StreamData
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

router = APIRouter()
GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": OriginalChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.get("/api/v1/", tags=["original"])
async def root() -> dict[str, str]:
    return {"message": "LLM Server API", "status": "running"}


def _failure(gw: Gateway, request: Request, error: DomainError, data: dict[str, Any] | None, started: float,
             route: str) -> Response:
    data = data or {}
    mapped = http_error(error)
    status = mapped.status
    lang = language(request)
    body = error_body(error, mapped.prefix_en if lang == "en" else mapped.prefix_ko, lang,
                      request_id=str(data.get("request_id") or "") if isinstance(data.get("request_id"), str) else "",
                      model=str(data.get("model") or "gpt-4o-mini")[:100],
                      use_user_api_key=data.get("use_user_api_key") is True, started=started)
    gw.refused(error)
    gw.observe(route, status, None, started)
    return _json(body, status, error_headers(error))


async def _prepare(gw: Gateway, request: Request, data: dict[str, Any],
                   route: str) -> tuple[OriginalChatRequest, ClientIdentity, ChatTurnCommand]:
    """Authenticated, validated, within the per-minute allowances."""
    settings = gw.container.settings
    client = await gw.admit(request)
    req = parse_request(checked(data), settings.max_prompt_chars, settings.max_messages)
    cmd = to_command(req, client, route, korean_reply_policy=settings.reply_language_policy)
    gw.charge_tokens(cmd)
    return req, client, cmd


@router.post("/api/v1/chat", tags=["original"], openapi_extra=_REQUEST_SCHEMA)
async def chat(request: Request, gw: GatewayDep) -> Response:
    started = time.perf_counter()
    route = "/api/v1/chat"
    data: dict[str, Any] | None = None
    try:
        data = await read_json(request, gw.container.settings.max_body_bytes)
        req, client, cmd = await _prepare(gw, request, data, route)

        async def answer() -> Response:
            result = await gw.container.chat.execute(cmd)
            gw.count_usage(result)
            gw.observe(route, 200, result.model, started, result.reply.upstream_seconds if result.reply else None)
            return _json(success_body(req, result, gw.container.settings.usd_krw_rate, started))

        return await run_once(gw.container.idempotency, gw.container.clock, client, idempotency_key(request),
                              data, answer)
    except DomainError as error:
        return _failure(gw, request, error, data, started, route)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.post("/api/v1/chat/stream", tags=["original"], openapi_extra=_REQUEST_SCHEMA)
async def chat_stream(request: Request, gw: GatewayDep) -> Response:
    """The same request as /api/v1/chat, answered as server-sent events: ``delta`` events
    with text, then one ``done`` event carrying the full /api/v1/chat answer (usage, cost)."""
    started = time.perf_counter()
    route = "/api/v1/chat/stream"
    data: dict[str, Any] | None = None
    try:
        data = await read_json(request, gw.container.settings.max_body_bytes)
        req, _, cmd = await _prepare(gw, request, data, route)
        events, first = await gw.open_stream(cmd, route, started)
    except DomainError as error:
        return _failure(gw, request, error, data, started, route)
    lang = language(request)

    def render(event: StreamData | ChatTurnResult) -> bytes | None:
        if isinstance(event, ChatTurnResult):
            return _sse("done", success_body(req, event, gw.container.settings.usd_krw_rate, started))
        return _sse("delta", {"delta": event.text_delta}) if event.text_delta else None

    def render_error(error: DomainError) -> bytes:
        mapped = http_error(error)
        return _sse("error", error_body(error, mapped.prefix_en if lang == "en" else mapped.prefix_ko, lang,
                                        request_id=req.request_id, model=req.model,
                                        use_user_api_key=req.use_user_api_key, started=started))

    return gw.stream_response(cmd, route, started, events, first, render, render_error)
