"""The OpenAI dialect: request bodies are passed through, minus what the gateway owns
(model checks, keys, usage accounting); responses are the upstream's bytes."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from domain.client_keys import ClientIdentity
from domain.errors import InvalidInput
from domain.ports import UpstreamApi
from domain.use_cases.chat_turn import ChatTurnCommand

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_SYSTEM_ROLES = {"system", "developer"}


def session_id(request: Request) -> str | None:
    """X-Session-Id names a conversation (as request_id does in the original dialect)."""
    value = request.headers.get("x-session-id") or None
    if value is not None and (len(value) > 200 or not value.isprintable()):
        raise _invalid("X-Session-Id", "X-Session-Id는 200자 이하의 출력 가능한 문자여야 합니다.",
                       "X-Session-Id must be at most 200 printable characters.")
    return value


def _invalid(field: str, ko: str, en: str) -> InvalidInput:
    return InvalidInput("invalid_field", ko, en, field=field)


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _invalid(name, f"{name}는 0보다 큰 정수여야 합니다.", f"{name} must be an integer greater than 0.")
    return value


def _common(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 100:
        raise _invalid("model", "model은 필수 문자열입니다.", "model is required and must be a string.")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)
                                    or not 0 <= temperature <= 2):
        raise _invalid("temperature", "temperature는 0 이상 2 이하여야 합니다.", "temperature must be between 0 and 2.")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "stream은 true 또는 false여야 합니다.", "stream must be a boolean.")
    return model


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _split(messages: list[dict[str, Any]], session: str | None) -> tuple[list[Any], list[Any] | None, list[Any]]:
    """(system, history, new). With a session id and no assistant turn in the request, the
    stored history is replayed (history None); otherwise the messages are used as given."""
    system = [m for m in messages if m.get("role") in _SYSTEM_ROLES]
    rest = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
    if session and not any(m.get("role") == "assistant" for m in rest):
        return system, None, rest
    return system, [], rest


def _check_size(texts: list[str], count: int, max_chars: int, max_messages: int) -> None:
    if count > max_messages:
        raise InvalidInput("too_many_messages", f"메시지가 너무 많습니다 (최대 {max_messages}개).",
                           f"Too many messages (max {max_messages}).", field="messages")
    if sum(len(t) for t in texts) > max_chars:
        raise InvalidInput("prompt_too_long", f"프롬프트가 너무 깁니다 (최대 {max_chars}자).",
                           f"The prompt is too long (max {max_chars} characters).", field="messages")


def chat_command(body: dict[str, Any], client: ClientIdentity, *, session: str | None, user_key: str | None,
                 max_chars: int, max_messages: int) -> ChatTurnCommand:
    model = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "messages는 비어 있지 않은 배열이어야 합니다.", "messages must be a non-empty array.")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise _invalid("messages", "각 메시지에는 올바른 role이 있어야 합니다.", "Each message needs a valid role.")
    _check_size([_text_of(m.get("content")) for m in messages], len(messages), max_chars, max_messages)
    max_out = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    return _command(UpstreamApi.CHAT_COMPLETIONS, "/v1/chat/completions", "messages", body, messages, model,
                    max_out, client, session, user_key)


def responses_command(body: dict[str, Any], client: ClientIdentity, *, session: str | None, user_key: str | None,
                      max_chars: int, max_messages: int) -> ChatTurnCommand:
    model = _common(body)
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        if not raw_input.strip():
            raise _invalid("input", "input은 비어 있을 수 없습니다.", "input must not be empty.")
        items: list[Any] = [{"role": "user", "content": raw_input}]
    elif isinstance(raw_input, list) and raw_input and all(isinstance(i, dict) for i in raw_input):
        items = raw_input
    else:
        raise _invalid("input", "input은 문자열 또는 비어 있지 않은 배열이어야 합니다.",
                       "input must be a string or a non-empty array.")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("instructions", "instructions는 문자열이어야 합니다.", "instructions must be a string.")
    _check_size([_text_of(i.get("content")) for i in items] + [instructions or ""], len(items), max_chars,
                max_messages)
    return _command(UpstreamApi.RESPONSES, "/v1/responses", "input", body, items, model,
                    _positive_int(body, "max_output_tokens"), client, session, user_key)


def _command(api: UpstreamApi, route: str, items_field: str, body: dict[str, Any], items: list[Any], model: str,
             max_out: int | None, client: ClientIdentity, session: str | None, user_key: str | None) -> ChatTurnCommand:
    """Everything but the items and the fields the gateway sets itself is passed through."""
    system, history, new = _split(items, session)
    prompt = next((_text_of(i.get("content")) for i in reversed(new) if i.get("role") == "user"), "")
    params = {k: v for k, v in body.items() if k not in ("model", items_field, "stream")}
    return ChatTurnCommand(
        request_id="req_" + uuid.uuid4().hex, client=client, api=api, model=model, route=route, new_messages=new,
        prompt=prompt, system=system, history=history, conversation_id=session, params=params,
        max_output_tokens=max_out, use_user_key=user_key is not None, user_api_key=user_key,
        # A Responses answer can be fetched by id later: its owner must be on record first.
        durable=api is UpstreamApi.RESPONSES)
