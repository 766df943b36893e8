"""POST /v1/chat/completions: OpenAI's Chat Completions API."""
from __future__ import annotations

from typing import Any

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import (
    OpenAiChatDialect,
    chat_turn,
    check_size,
    common_fields,
    positive_int,
    role_of,
    text_of,
    valid_content,
)
from domain.admission import MAX_CHOICES
from domain.errors import InvalidInput
from domain.ports import StreamData, UpstreamApi
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class ChatCompletionsDialect(OpenAiChatDialect):
    route = "/v1/chat/completions"

    def parse(self, body: dict[str, Any], call: Call) -> ChatTurnCommand:
        model = common_fields(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidInput("invalid_field", field="messages", reason="non_empty_array")
        for index, m in enumerate(messages):
            if not isinstance(m, dict) or role_of(m) not in _ROLES:
                raise InvalidInput("invalid_field", field="messages", reason="valid_role")
            # OpenAI: a string or an array of parts; null only for an assistant turn that calls
            # tools (or a function), or refuses.
            may_be_null = role_of(m) == "function" or (role_of(m) == "assistant" and bool(
                m.get("tool_calls") or m.get("function_call") or m.get("refusal")))
            if not valid_content(m.get("content"), allow_null=may_be_null):
                raise InvalidInput("invalid_field", field=f"messages[{index}].content", reason="content_type")
            if role_of(m) == "tool" and not isinstance(m.get("tool_call_id"), str):
                raise InvalidInput("invalid_field", field=f"messages[{index}].tool_call_id", reason="required_string")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidInput("invalid_field", field="stream_options", reason="object")
        check_size([text_of(m.get("content")) for m in messages], len(messages), call.settings.max_prompt_chars,
                   call.settings.max_messages)
        # Whichever limit the model reads, the worst case is the larger one.
        limits = [v for v in (positive_int(body, "max_completion_tokens"), positive_int(body, "max_tokens")) if v]
        max_out = max(limits) if limits else None
        n = positive_int(body, "n")
        if n is not None and n > MAX_CHOICES:
            raise InvalidInput("invalid_field", field="n", reason="between", low=1, high=MAX_CHOICES)
        return chat_turn(UpstreamApi.CHAT_COMPLETIONS, call, "messages", body, messages, model, max_out)

    def render_event(self, event: StreamData | ChatTurnResult, command: ChatTurnCommand, call: Call) -> bytes | None:
        """The usage chunk the gateway always asks for is passed on only if the client asked
        for it too."""
        if isinstance(event, StreamData) and event.usage_only:
            options = command.params.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                return None
        return super().render_event(event, command, call)


CHAT_COMPLETIONS = ChatCompletionsDialect()
