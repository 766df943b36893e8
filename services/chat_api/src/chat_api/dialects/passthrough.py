"""POST /v1/embeddings and POST /v1/moderations: the upstream's answers as they are, metered
(embeddings at the catalogue's input price, moderations at 0) and in the ledger."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi.responses import Response

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import OpenAiDialect, client_retrying, header_user_key, json_response
from domain.errors import InvalidInput
from domain.ports import UpstreamApi
from domain.text import estimate_tokens
from domain.use_cases.passthrough import PassThroughCommand, PassThroughResult

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on the items of one embeddings request
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


def _model(body: dict[str, Any], default: str | None = None) -> str:
    model = body.get("model", default)
    if not isinstance(model, str) or not model.strip() or len(model) > 100:
        raise InvalidInput("invalid_field", field="model", reason="required_string")
    return model


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


def embedding_input_tokens(value: Any) -> int:
    """The input's size in (estimated) tokens; refuses what OpenAI refuses: an empty string,
    an empty array, more than 2048 items, or items that are not strings or token arrays."""
    if isinstance(value, str) and value:
        return estimate_tokens(value)
    if _token_list(value):
        return len(value)
    if isinstance(value, list) and 0 < len(value) <= MAX_EMBEDDING_INPUTS:
        if all(isinstance(v, str) and v for v in value):
            return sum(estimate_tokens(v) for v in value)
        if all(_token_list(v) for v in value):
            return sum(len(v) for v in value)
    raise InvalidInput("invalid_field", field="input", reason="embedding_input", max=MAX_EMBEDDING_INPUTS)


def _moderation_input(value: Any) -> int:
    if isinstance(value, str) and value:
        return estimate_tokens(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return sum(estimate_tokens(v) for v in value)
    if isinstance(value, list) and value and all(isinstance(v, dict) and isinstance(v.get("type"), str)
                                                   for v in value):
        return sum(estimate_tokens(str(v.get("text") or "")) for v in value)
    raise InvalidInput("invalid_field", field="input", reason="moderation_input")


class PassThroughDialect(OpenAiDialect[PassThroughCommand, PassThroughResult]):
    def __init__(self, api: UpstreamApi) -> None:
        self.api = api
        self.route = "/v1/" + api.value

    def parse(self, body: dict[str, Any], call: Call) -> PassThroughCommand:
        if self.api is UpstreamApi.EMBEDDINGS:
            model = _model(body)
            tokens = embedding_input_tokens(body.get("input"))
            encoding = body.get("encoding_format")
            if encoding is not None and encoding not in ("float", "base64"):
                raise InvalidInput("invalid_field", field="encoding_format", reason="one_of", values="float, base64")
            dimensions = body.get("dimensions")
            if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)
                                           or dimensions <= 0):
                raise InvalidInput("invalid_field", field="dimensions", reason="positive_int")
        else:
            model = _model(body, DEFAULT_MODERATION_MODEL)
            tokens = _moderation_input(body.get("input"))
        user_key = header_user_key(call)
        params = {k: v for k, v in body.items() if k != "model"}
        return PassThroughCommand(
            request_id="req_" + uuid.uuid4().hex, client=call.client, api=self.api, model=model, route=self.route,
            params=params, input_tokens=tokens, pii=call.pii, use_user_key=user_key is not None, user_api_key=user_key,
            retries=not client_retrying(call))

    def model_of(self, command: PassThroughCommand) -> str | None:
        return command.model

    def render(self, result: PassThroughResult, command: PassThroughCommand, call: Call) -> Response:
        return json_response(result.reply.body)


EMBEDDINGS = PassThroughDialect(UpstreamApi.EMBEDDINGS)
MODERATIONS = PassThroughDialect(UpstreamApi.MODERATIONS)
