"""GET /v1/models: the models the operator allows, in OpenAI's list shape."""
from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import OpenAiDialect, json_response
from domain.use_cases.models import ListModelsQuery


class ModelsDialect(OpenAiDialect[ListModelsQuery, tuple[str, ...]]):
    route = "/v1/models"
    reads_body = False

    def parse(self, body: dict[str, Any], call: Call) -> ListModelsQuery:
        return ListModelsQuery()

    def render(self, result: tuple[str, ...], command: ListModelsQuery, call: Call) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "llm-server"} for m in result]
        return json_response({"object": "list", "data": data})


MODELS = ModelsDialect()
