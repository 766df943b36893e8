"""What the OpenAI-shaped dialects share: request checks, command building, key headers and
the ``{"error": {...}}`` shape (so the SDK raises the matching exception class).

Request bodies are passed through, minus what the gateway owns (model checks, keys, usage
accounting); responses are the upstream's bytes.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Generic

import orjson
from fastapi.responses import Response

from chat_api.dialects.base import Call, Cmd, Dialect, Failure, Res
from chat_api.errors import error_headers, openai_error_body, openai_status
from domain.errors import DomainError, InvalidInput, UpstreamError
from domain.key_policy import user_api_key
from domain.ports import StreamData, UpstreamApi
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

_SYSTEM_ROLES = {"system", "developer"}


def session_id(call: Call) -> str | None:
    """X-Session-Id names a conversation (as request_id does in the original dialect)."""
    value = call.headers.get("x-session-id") or None
    if value is not None and (len(value) > 200 or not value.isprintable()):
        raise InvalidInput("invalid_field", field="X-Session-Id", reason="printable_text", max=200)
    return value


def header_user_key(call: Call) -> str | None:
    return user_api_key(call.headers.get("x-openai-api-key"), "X-OpenAI-Api-Key")


def client_retrying(call: Call) -> bool:
    """The official SDKs number their attempts in ``x-stainless-retry-count`` (0 on the
    first). On a retry the gateway makes one upstream attempt; and a failure the gateway
    already retried itself says ``x-should-retry: false`` (see ``error_headers``), which the
    SDKs obey. One SDK call (2 retries by default) is so at most 3 upstream attempts."""
    value = call.headers.get("x-stainless-retry-count", "").strip()
    return value.isdigit() and int(value) > 0


def positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput("invalid_field", field=name, reason="positive_int")
    return value


def common_fields(body: Mapping[str, Any]) -> str:
    """``model`` (returned), ``temperature`` and ``stream``, as both APIs define them."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 100:
        raise InvalidInput("invalid_field", field="model", reason="required_string")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)
                                    or not 0 <= temperature <= 2):
        raise InvalidInput("invalid_field", field="temperature", reason="between", low=0, high=2)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidInput("invalid_field", field="stream", reason="boolean")
    return model


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def valid_content(content: Any, *, allow_null: bool) -> bool:
    """A message's content as OpenAI accepts it: a string, or a non-empty array of parts
    (objects naming their ``type``); null where the role allows it."""
    if content is None:
        return allow_null
    if isinstance(content, str):
        return True
    return isinstance(content, list) and bool(content) and all(
        isinstance(part, dict) and isinstance(part.get("type"), str) for part in content)


def role_of(item: Mapping[str, Any]) -> str | None:
    role = item.get("role")
    return role if isinstance(role, str) else None


def check_size(texts: list[str], count: int, settings_max_chars: int, max_messages: int) -> None:
    if count > max_messages:
        raise InvalidInput("too_many_messages", field="messages", max=max_messages)
    if sum(len(t) for t in texts) > settings_max_chars:
        raise InvalidInput("prompt_too_long", field="messages", max=settings_max_chars)


def _split(items: list[dict[str, Any]], session: str | None,
           upstream_context: bool) -> tuple[list[Any], list[Any] | None, list[Any]]:
    """(system, history, new). With a session id, no assistant turn in the request and no
    context kept upstream (``previous_response_id``), the stored history is replayed
    (history None); otherwise the items are used as given (the context is never sent twice)."""
    system = [m for m in items if role_of(m) in _SYSTEM_ROLES]
    rest = [m for m in items if role_of(m) not in _SYSTEM_ROLES]
    if session and not upstream_context and not any(role_of(m) == "assistant" for m in rest):
        return system, None, rest
    return system, [], rest


def chat_turn(api: UpstreamApi, call: Call, items_field: str, body: Mapping[str, Any], items: list[dict[str, Any]],
              model: str, max_out: int | None) -> ChatTurnCommand:
    """The turn: everything but the items and the fields the gateway sets itself is passed
    through."""
    session = session_id(call)
    user_key = header_user_key(call)
    system, history, new = _split(items, session, body.get("previous_response_id") is not None)
    prompt = next((text_of(i.get("content")) for i in reversed(new) if role_of(i) == "user"), "")
    params = {k: v for k, v in body.items() if k not in ("model", items_field, "stream")}
    return ChatTurnCommand(
        request_id="req_" + uuid.uuid4().hex, client=call.client, api=api, model=model, route=call.route,
        new_messages=new, prompt=prompt, pii=call.pii, system=system, history=history, conversation_id=session, params=params,
        max_output_tokens=max_out, use_user_key=user_key is not None, user_api_key=user_key,
        # A Responses answer can be fetched by id later: its owner must be on record first.
        durable=api is UpstreamApi.RESPONSES, retries=not client_retrying(call))


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=dict(headers) if headers else None)


def passed_through_refusal(error: DomainError) -> Response | None:
    """An upstream 4xx as OpenAI's clients expect it: its status, its error body unchanged
    (``type``, ``code``, ``param``, ``message``) and its relayed headers. None for anything
    else (the gateway's own errors, upstream 5xx, timeouts)."""
    if not isinstance(error, UpstreamError) or error.body is None or error.upstream_status is None \
            or not 400 <= error.upstream_status < 500:
        return None
    headers = {**error.headers, **error_headers(error, default_retry_after=False)}
    return json_response(error.body, error.upstream_status, headers)


class OpenAiDialect(Dialect[Cmd, Res], Generic[Cmd, Res]):
    """OpenAI's error shape, with the upstream's client-side refusals passed through."""

    def render_error(self, error: DomainError, failure: Failure) -> Response:
        relayed = passed_through_refusal(error)
        if relayed is not None:
            return relayed
        return json_response(openai_error_body(error, failure.lang), openai_status(error), error_headers(error))

    def render_stream_error(self, error: DomainError, command: Cmd, call: Call) -> bytes:
        return b"data: " + orjson.dumps(openai_error_body(error, call.lang)) + b"\n\n"


class OpenAiChatDialect(OpenAiDialect[ChatTurnCommand, ChatTurnResult]):
    """A chat turn answered with the upstream's own JSON, or its SSE bytes relayed as they come."""

    idempotent = True

    def wants_stream(self, body: Mapping[str, Any]) -> bool:
        return body.get("stream") is True

    def model_of(self, command: ChatTurnCommand) -> str | None:
        return command.model

    def render(self, result: ChatTurnResult, command: ChatTurnCommand, call: Call) -> Response:
        return json_response(result.reply.body if result.reply else {})

    def render_event(self, event: StreamData | ChatTurnResult, command: ChatTurnCommand, call: Call) -> bytes | None:
        """Upstream events as they came; the result brings the held closing events, the last
        of them with the cost as an SSE comment line (ignored by SSE parsers)."""
        if not isinstance(event, ChatTurnResult):
            return event.raw
        if not event.held:
            return None
        *before, last = [e.raw for e in event.held]
        if event.cost is not None:
            cost = format(event.cost.usd_rounded(8), "f").encode()
            last = last.rstrip(b"\n") + b"\n: x-llm-cost-usd: " + cost + b"\n\n"
        return b"".join([*before, last])
