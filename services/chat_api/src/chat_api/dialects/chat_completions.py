"""POST /v1/chat/completions: OpenAI's Chat Completions API."""
from __future__ import annotations

from typing import Any

from chat_api.dialects.base import Call
from chat_api.dialects.openai_compat import (
    OpenAiChatDialect,
    chat_turn,
    check_size,
    common_fields,
    invalid,
    positive_int,
    role_of,
    text_of,
)
from domain.ports import StreamData, UpstreamApi
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class ChatCompletionsDialect(OpenAiChatDialect):
    route = "/v1/chat/completions"

    def parse(self, body: dict[str, Any], call: Call) -> ChatTurnCommand:
        model = common_fields(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages", "messages는 비어 있지 않은 배열이어야 합니다.", "messages must be a non-empty array.")
        for m in messages:
            if not isinstance(m, dict) or role_of(m) not in _ROLES:
                raise invalid("messages", "각 메시지에는 올바른 role이 있어야 합니다.", "Each message needs a valid role.")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise invalid("stream_options", "stream_options는 객체여야 합니다.", "stream_options must be an object.")
        check_size([text_of(m.get("content")) for m in messages], len(messages), call.settings.max_prompt_chars,
                   call.settings.max_messages)
        max_out = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")
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
