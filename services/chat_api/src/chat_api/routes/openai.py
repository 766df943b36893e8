"""/v1/*: the OpenAI dialect, so the official SDK works by changing base_url and api_key."""
from __future__ import annotations

from typing import Annotated, Any

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

# OpenAPI links: which later calls take the id a stored response came back with. They say in
# the schema what the SDK does with `response.id` (fetch it, list its input, cancel, delete, or
# continue from it), so a tool that reads the schema, like a stateful fuzzer, can chain the
# calls the way a client does. Operation ids are OpenAI's own (its published spec's names).
_RESPONSE_ID = "$response.body#/id"
_LINKS: dict[str, dict[str, Any]] = {
    "GetResponse": {"operationId": "getResponse", "parameters": {"path.response_id": _RESPONSE_ID},
                    "description": "The stored response, by the id it came back with"},
    "ListInputItems": {"operationId": "listInputItems", "parameters": {"path.response_id": _RESPONSE_ID},
                       "description": "The input items the response was created from"},
    "CancelResponse": {"operationId": "cancelResponse", "parameters": {"path.response_id": _RESPONSE_ID},
                       "description": "Cancel it (a background response)"},
    "DeleteResponse": {"operationId": "deleteResponse", "parameters": {"path.response_id": _RESPONSE_ID},
                       "description": "Delete the stored response"},
    "ContinueResponse": {"operationId": "createResponse", "requestBody": {"previous_response_id": _RESPONSE_ID},
                         "description": "The next turn, with the response as its previous_response_id"},
}


def _returns_a_response(*links: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of an operation whose JSON body is a response object, with its links."""
    return {200: {"description": "A response object (JSON; server-sent events when streamed)",
                  "links": {name: _LINKS[name] for name in links}}}

_OBJECT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model"], "additionalProperties": True,
    "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"},
                   "messages": {"type": "array", "items": {"type": "object"}},
                   "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                   "max_tokens": {"type": "integer"}, "temperature": {"type": "number"}}}}}}}


@router.post("/chat/completions", operation_id="createChatCompletion", openapi_extra=_OBJECT_BODY)
async def chat_completions(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CHAT_COMPLETIONS, gw.use_cases.chat)


@router.post("/responses", operation_id="createResponse", openapi_extra=_OBJECT_BODY,
             responses=_returns_a_response(*_LINKS))
async def responses(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, RESPONSES, gw.use_cases.chat)


@router.get("/responses/{response_id}", operation_id="getResponse",
            responses=_returns_a_response("ListInputItems", "CancelResponse", "DeleteResponse", "ContinueResponse"))
async def get_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, FETCH_RESPONSE, gw.use_cases.stored_responses)


@router.post("/responses/{response_id}/cancel", operation_id="cancelResponse",
             responses=_returns_a_response("GetResponse", "DeleteResponse"))
async def cancel_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, CANCEL_RESPONSE, gw.use_cases.stored_responses)


@router.delete("/responses/{response_id}", operation_id="deleteResponse")
async def delete_response(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, DELETE_RESPONSE, gw.use_cases.stored_responses)


@router.get("/responses/{response_id}/input_items", operation_id="listInputItems")
async def response_input_items(response_id: str, request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, RESPONSE_INPUT_ITEMS, gw.use_cases.stored_responses)


@router.post("/embeddings", operation_id="createEmbedding", openapi_extra=_OBJECT_BODY)
async def embeddings(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, EMBEDDINGS, gw.use_cases.passthrough)


@router.post("/moderations", operation_id="createModeration", openapi_extra=_OBJECT_BODY)
async def moderations(request: Request, gw: GatewayDep) -> Response:
    return await gw.serve(request, MODERATIONS, gw.use_cases.passthrough)


@router.get("/models", operation_id="listModels")
async def models(request: Request, gw: GatewayDep) -> Response:
    """What the upstream serves that the operator allows (the price catalogue plus EXTRA_MODELS)."""
    return await gw.serve(request, MODELS, gw.use_cases.list_models)


@router.get("/models/{model:path}", operation_id="retrieveModel")
async def model(model: str, request: Request, gw: GatewayDep) -> Response:
    """One model of that list (a fine-tune's name has colons, so the rest of the path)."""
    return await gw.serve(request, MODEL, gw.use_cases.list_models)
