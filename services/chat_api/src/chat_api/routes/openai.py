"""/v1/*: the OpenAI dialect, so the official SDK works by changing base_url and api_key."""
from __future__ import annotations

import re
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chat_api.dialects.openai_compat import chat_command, responses_command, session_id
from chat_api.errors import error_headers, openai_error_body, openai_status
from chat_api.gateway import Gateway, get_gateway
from chat_api.idempotency import idempotency_key, run_once
from chat_api.inbound import checked, language, read_json
from domain.errors import DomainError, InvalidInput, NotFound
from domain.ports import StreamData
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

router = APIRouter(prefix="/v1", tags=["openai"])
_RESPONSE_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_OBJECT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model"], "additionalProperties": True,
    "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"},
                   "messages": {"type": "array", "items": {"type": "object"}},
                   "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                   "max_tokens": {"type": "integer"}, "temperature": {"type": "number"}}}}}}}


def _error(gw: Gateway, request: Request, error: DomainError, route: str, started: float,
           model: str | None = None) -> Response:
    status = openai_status(error)
    gw.refused(error)
    gw.observe(route, status, model, started)
    return Response(orjson.dumps(openai_error_body(error, language(request))), status_code=status,
                    media_type="application/json", headers=error_headers(error))


def _key_headers(result: ChatTurnResult) -> dict[str, str]:
    headers = {"x-llm-key-source": result.key_source.value}
    if result.fallback_reason:
        headers["x-llm-fallback-reason"] = result.fallback_reason.value
    if result.cost is not None:
        headers["x-llm-cost-usd"] = format(result.cost.usd_rounded(8), "f")
    return headers


async def _handle(request: Request, gw: GatewayDep, route: str, build: Any) -> Response:
    started = time.perf_counter()
    cmd: ChatTurnCommand | None = None
    try:
        body = checked(await read_json(request, gw.container.settings.max_body_bytes))
        client = await gw.admit(request)
        settings = gw.container.settings
        cmd = build(body, client, session=session_id(request),
                    user_key=request.headers.get("x-openai-api-key") or None,
                    max_chars=settings.max_prompt_chars, max_messages=settings.max_messages)
        gw.charge_tokens(cmd)
        if body.get("stream") is True:
            return await _stream(request, gw, cmd, route, started, body)
        turn = cmd

        async def answer() -> Response:
            result = await gw.container.chat.execute(turn)
            gw.count_usage(result)
            gw.observe(route, 200, result.model, started, result.reply.upstream_seconds if result.reply else None)
            body_out = result.reply.body if result.reply else {}
            return Response(orjson.dumps(body_out), media_type="application/json", headers=_key_headers(result))

        return await run_once(gw.container.idempotency, gw.container.clock, client, idempotency_key(request),
                              body, answer)
    except DomainError as error:
        return _error(gw, request, error, route, started, cmd.model if cmd else None)


async def _stream(request: Request, gw: Gateway, cmd: ChatTurnCommand, route: str, started: float,
                  body: dict[str, Any]) -> Response:
    """Relays the upstream's SSE events byte for byte as they arrive. The usage chunk the
    gateway always asks for is passed on only if the client asked for it too."""
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events, first = await gw.open_stream(cmd, route, started)

    def render(event: StreamData | ChatTurnResult) -> bytes | None:
        if isinstance(event, ChatTurnResult) or (event.usage_only and not wants_usage):
            return None
        return event.raw

    def render_error(error: DomainError) -> bytes:
        return b"data: " + orjson.dumps(openai_error_body(error, language(request))) + b"\n\n"

    return gw.stream_response(cmd, route, started, events, first, render, render_error)


@router.post("/chat/completions", openapi_extra=_OBJECT_BODY)
async def chat_completions(request: Request, gw: GatewayDep) -> Response:
    return await _handle(request, gw, "/v1/chat/completions", chat_command)


@router.post("/responses", openapi_extra=_OBJECT_BODY)
async def responses(request: Request, gw: GatewayDep) -> Response:
    return await _handle(request, gw, "/v1/responses", responses_command)


async def _by_id(request: Request, gw: Gateway, response_id: str, cancel: bool) -> Response:
    route = "/v1/responses/{id}" + ("/cancel" if cancel else "")
    started = time.perf_counter()
    try:
        client = await gw.admit(request)
        if not _RESPONSE_ID.fullmatch(response_id):
            raise InvalidInput("invalid_response_id", "응답 ID 형식이 올바르지 않습니다.", "Malformed response id.",
                               field="response_id")
        found, owner = await gw.container.ledger.response_owner(response_id)
        if not found or owner != client.key_id:  # another client's response is as good as absent
            raise NotFound("response_not_found", "응답을 찾을 수 없습니다.", "No such response.", field="response_id")
        user_key = request.headers.get("x-openai-api-key") or None
        choice = gw.container.policy.choose(use_user_key=user_key is not None, user_key=user_key,
                                                 may_use_server_key=client.may_use_server_key)
        provider = gw.container.provider
        body = await (provider.cancel_response(response_id, choice.api_key) if cancel
                      else provider.get_response(response_id, choice.api_key))
        await gw.container.background.observe(response_id, body)  # a finished background response settles now
    except DomainError as error:
        return _error(gw, request, error, route, started)
    gw.observe(route, 200, None, started)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await _by_id(request, gw, response_id, cancel=False)


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await _by_id(request, gw, response_id, cancel=True)


@router.get("/models")
async def models(request: Request, gw: GatewayDep) -> Response:
    """The models the operator allows: the price catalogue plus EXTRA_MODELS."""
    try:
        await gw.admit(request)
    except DomainError as error:
        return _error(gw, request, error, "/v1/models", time.perf_counter())
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "llm-server"} for m in sorted(gw.model_labels)]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
