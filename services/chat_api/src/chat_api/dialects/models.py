"""GET /v1/models and GET /v1/models/{id}: the models a client can use, in OpenAI's shapes."""
from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import OpenAiDialect, json_response
from domain.use_cases.models import ListModelsQuery


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "llm-server"}


class ModelsDialect(OpenAiDialect[ListModelsQuery, tuple[str, ...]]):
    route = "/v1/models"
    reads_body = False

    def parse(self, body: dict[str, Any], call: Call) -> ListModelsQuery:
        return ListModelsQuery()

    def render(self, result: tuple[str, ...], command: ListModelsQuery, call: Call) -> Response:
        return json_response({"object": "list", "data": [_model(m) for m in result]})


class ModelDialect(OpenAiDialect[ListModelsQuery, tuple[str, ...]]):
    route = "/v1/models/{id}"
    reads_body = False

    def parse(self, body: dict[str, Any], call: Call) -> ListModelsQuery:
        return ListModelsQuery(call.path_params.get("model", ""))

    def render(self, result: tuple[str, ...], command: ListModelsQuery, call: Call) -> Response:
        return json_response(_model(result[0]))


MODELS = ModelsDialect()
MODEL = ModelDialect()
