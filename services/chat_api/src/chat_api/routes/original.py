"""POST /api/v1/chat and /api/v1/chat/stream: the original dialect (see dialects/original.py)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chat_api.dialects.original import CHAT, CHAT_STREAM, OriginalChatRequest
from chat_api.gateway import Gateway, get_gateway

router = APIRouter(tags=["original"])
GatewayDep = Annotated[Gateway, Depends(get_gateway)]



def _self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema with its nested models written in place: FastAPI does not copy an
    ``openapi_extra`` schema's ``$defs`` into the document's components, so a ``$ref`` to them
    would point at nothing (and a schema reader could not build the body at all)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


_REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _self_contained(OriginalChatRequest.model_json_schema())}}}}


@router.get("/api/v1/")
async def root() -> dict[str, str]:
    return {"message": "LLM Server API", "status": "running"}


# The original's answer (dialects/original.py, success_body), plus the gateway's additions.
_TYPES = {"string": ("id", "request_id", "object", "status", "model", "output_text", "text_format_type"),
          "integer": ("created_at", "input_tokens", "output_tokens", "total_tokens", "cached_tokens",
                      "reasoning_tokens", "cost"),
          "number": ("response_time",), "boolean": ("success", "use_user_api_key")}
_NULLABLE = {"error": "string", "cost_usd": "number", "cost_krw": "number", "key_source": "string",
             "fallback_reason": "string", "conversation_turn": "integer"}
_ANSWER = {"type": "object", "required": [name for names in _TYPES.values() for name in names], "properties": {
    **{name: {"type": kind} for kind, names in _TYPES.items() for name in names},
    **{name: {"type": [kind, "null"]} for name, kind in _NULLABLE.items()}}}

# The answer's request_id is the conversation to continue: the next turn sends it back (an
# OpenAPI link, so a tool reading the schema chains turns as a client does).
_CONTINUES: dict[int | str, dict[str, Any]] = {200: {
    "description": "The original's answer", "content": {"application/json": {"schema": _ANSWER}}, "links": {
        name: {"operationId": target, "requestBody": {"request_id": "$response.body#/request_id"},
               "description": "The next turn of the same conversation"}
        for name, target in (("ContinueConversation", "chat"), ("ContinueConversationStreamed", "chatStream"))}}}


@router.post("/api/v1/chat", operation_id="chat", openapi_extra=_REQUEST_SCHEMA, responses=_CONTINUES)
async def chat(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CHAT, gw.use_cases.chat)


@router.post("/api/v1/chat/stream", operation_id="chatStream", openapi_extra=_REQUEST_SCHEMA)
async def chat_stream(request: Request, gw: GatewayDep) -> Response:
    """The same request as /api/v1/chat, answered as server-sent events: ``delta`` events
    with text, then one ``done`` event carrying the full /api/v1/chat answer (usage, cost)."""
    return await gw.serve(request, CHAT_STREAM, gw.use_cases.chat)
