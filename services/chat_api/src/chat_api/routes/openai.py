"""/v1/*: the OpenAI dialect, so the official SDK works by changing base_url and api_key."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chat_api.dialects.chat_completions import CHAT_COMPLETIONS
from chat_api.dialects.models import MODEL, MODELS
from chat_api.dialects.passthrough import EMBEDDINGS, MODERATIONS
from chat_api.dialects.responses import (
    CANCEL_RESPONSE,
    DELETE_RESPONSE,
    FETCH_RESPONSE,
    RESPONSE_INPUT_ITEMS,
    RESPONSES,
)
from chat_api.gateway import Gateway, get_gateway

router = APIRouter(prefix="/v1", tags=["openai"])
GatewayDep = Annotated[Gateway, Depends(get_gateway)]

_OBJECT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model"], "additionalProperties": True,
    "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"},
                   "messages": {"type": "array", "items": {"type": "object"}},
                   "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                   "max_tokens": {"type": "integer"}, "temperature": {"type": "number"}}}}}}}


@router.post("/chat/completions", openapi_extra=_OBJECT_BODY)
async def chat_completions(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CHAT_COMPLETIONS, gw.use_cases.chat)


@router.post("/responses", openapi_extra=_OBJECT_BODY)
async def responses(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, RESPONSES, gw.use_cases.chat)


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, FETCH_RESPONSE, gw.use_cases.stored_responses)


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CANCEL_RESPONSE, gw.use_cases.stored_responses)


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, DELETE_RESPONSE, gw.use_cases.stored_responses)


@router.get("/responses/{response_id}/input_items")
async def response_input_items(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, RESPONSE_INPUT_ITEMS, gw.use_cases.stored_responses)


@router.post("/embeddings", openapi_extra=_OBJECT_BODY)
async def embeddings(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, EMBEDDINGS, gw.use_cases.passthrough)


@router.post("/moderations", openapi_extra=_OBJECT_BODY)
async def moderations(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, MODERATIONS, gw.use_cases.passthrough)


@router.get("/models")
async def models(request: Request, gw: GatewayDep) -> Response:
    """What the upstream serves that the operator allows (the price catalogue plus EXTRA_MODELS)."""
    return await gw.serve(request, MODELS, gw.use_cases.list_models)


@router.get("/models/{model:path}")
async def model(model: str, request: Request, gw: GatewayDep) -> Response:
    """One model of that list (a fine-tune's name has colons, so the rest of the path)."""
    return await gw.serve(request, MODEL, gw.use_cases.list_models)
