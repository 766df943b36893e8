"""/v1/responses: OpenAI's Responses API, and its stored responses fetched or cancelled by id."""
from __future__ import annotations

import re
from typing import Any

from fastapi.responses import Response

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import (
    OpenAiChatDialect,
    OpenAiDialect,
    chat_turn,
    check_size,
    common_fields,
    header_user_key,
    json_response,
    positive_int,
    role_of,
    text_of,
    valid_content,
)
from domain.errors import InvalidInput
from domain.ports import UpstreamApi
from domain.use_cases.chat_turn import ChatTurnCommand
from domain.use_cases.stored_responses import StoredResponseAction, StoredResponseCommand

_ROLES = {"system", "developer", "user", "assistant"}
_RESPONSE_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


class ResponsesDialect(OpenAiChatDialect):
    route = "/v1/responses"

    def parse(self, body: dict[str, Any], call: Call) -> ChatTurnCommand:
        model = common_fields(body)
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            if not raw_input.strip():
                raise InvalidInput("invalid_field", field="input", reason="not_empty")
            items: list[dict[str, Any]] = [{"role": "user", "content": raw_input}]
        elif isinstance(raw_input, list) and raw_input and all(isinstance(i, dict) for i in raw_input):
            items = raw_input
        else:
            raise InvalidInput("invalid_field", field="input", reason="string_or_array")
        # Items without a role are other item types (function_call_output, ...); a role, when
        # present, must be one the API knows.
        if any("role" in i and role_of(i) not in _ROLES for i in items):
            raise InvalidInput("invalid_field", field="input", reason="valid_role")
        for index, item in enumerate(items):
            if "role" in item and not valid_content(item.get("content"), allow_null=False):
                raise InvalidInput("invalid_field", field=f"input[{index}].content", reason="content_type")
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise InvalidInput("invalid_field", field="instructions", reason="string")
        check_size([text_of(i.get("content")) for i in items] + [instructions or ""], len(items),
                   call.settings.max_prompt_chars, call.settings.max_messages)
        return chat_turn(UpstreamApi.RESPONSES, call, "input", body, items, model,
                         positive_int(body, "max_output_tokens"))


_SUFFIX = {StoredResponseAction.CANCEL: "/cancel", StoredResponseAction.INPUT_ITEMS: "/input_items"}
_INPUT_ITEMS_QUERY = ("limit", "order", "after", "before", "include")


class StoredResponseDialect(OpenAiDialect[StoredResponseCommand, dict[str, Any]]):
    """GET and DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel and GET
    /v1/responses/{id}/input_items: the upstream's object as is."""

    reads_body = False

    def __init__(self, action: StoredResponseAction) -> None:
        self.action = action
        self.route = "/v1/responses/{id}" + _SUFFIX.get(action, "")

    def parse(self, body: dict[str, Any], call: Call) -> StoredResponseCommand:
        response_id = call.path_params.get("response_id", "")
        if not _RESPONSE_ID.fullmatch(response_id):
            raise InvalidInput("invalid_response_id", field="response_id")
        query = {k: v for k, v in (call.query or {}).items() if k in _INPUT_ITEMS_QUERY and len(v) <= 200}
        return StoredResponseCommand(call.client, response_id, self.action, header_user_key(call), query)

    def render(self, result: dict[str, Any], command: StoredResponseCommand, call: Call) -> Response:
        return json_response(result)


RESPONSES = ResponsesDialect()
FETCH_RESPONSE = StoredResponseDialect(StoredResponseAction.FETCH)
CANCEL_RESPONSE = StoredResponseDialect(StoredResponseAction.CANCEL)
DELETE_RESPONSE = StoredResponseDialect(StoredResponseAction.DELETE)
RESPONSE_INPUT_ITEMS = StoredResponseDialect(StoredResponseAction.INPUT_ITEMS)
