"""POST /api/v1/chat and /api/v1/chat/stream: the original dialect (see dialects/original.py)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chat_api.dialects.original import CHAT, CHAT_STREAM, OriginalChatRequest
from chat_api.gateway import Gateway, get_gateway

router = APIRouter(tags=["original"])
GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": OriginalChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


@router.get("/api/v1/")
async def root() -> dict[str, str]:
    return {"message": "LLM Server API", "status": "running"}


@router.post("/api/v1/chat", openapi_extra=_REQUEST_SCHEMA)
async def chat(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CHAT, gw.use_cases.chat)


@router.post("/api/v1/chat/stream", openapi_extra=_REQUEST_SCHEMA)
async def chat_stream(request: Request, gw: GatewayDep) -> Response:
    """The same request as /api/v1/chat, answered as server-sent events: ``delta`` events
    with text, then one ``done`` event carrying the full /api/v1/chat answer (usage, cost)."""
    return await gw.serve(request, CHAT_STREAM, gw.use_cases.chat)
