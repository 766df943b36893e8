"""The original dialect: POST /api/v1/chat (+ /stream), as the seed server accepted and
answered it (the seed's ORIGINAL_API.md), with its bugs fixed."""
from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chat_api.dialects.base import Call, Dialect, Failure
from chat_api.dialects.openai_compat import json_response
from chat_api.errors import error_headers, http_error, message_of
from domain.errors import DomainError, InvalidInput
from domain.key_policy import MAX_USER_KEY_CHARS, user_api_key
from domain.money import Money
from domain.ports import StreamData, UpstreamApi
from domain.text import contains_hangul
from domain.use_cases.chat_turn import ChatTurnCommand, ChatTurnResult

KOREAN_REPLY_INSTRUCTION = "사용자가 한국어로 물으면 한국어로 답하세요."


class HistoryMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ("system", "developer", "user", "assistant"):
            raise ValueError("role must be system, developer, user or assistant")
        return value


class OriginalChatRequest(BaseModel):
    """Every field the original accepted, with its defaults. Unknown fields are ignored, as
    they were."""

    model_config = ConfigDict(extra="ignore")

    request_id: str = Field("", max_length=200)
    system_prompt: str = ""
    user_prompt: str = Field("", validate_default=True)
    instructions: str = ""
    conversation_history: list[HistoryMessage] = Field(default_factory=list)
    max_tokens: int = Field(1000, gt=0)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    model: str = Field("gpt-4o-mini", min_length=1, max_length=100)
    openai_api_key: str = Field("", max_length=MAX_USER_KEY_CHARS, repr=False)
    use_user_api_key: bool = False

    @field_validator("user_prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("user_prompt must not be empty")
        return value


def parse_request(data: dict[str, Any], max_prompt_chars: int, max_messages: int) -> OriginalChatRequest:
    try:
        req = OriginalChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "body"
        if field == "temperature":
            raise InvalidInput("invalid_field", field=field, reason="between", low=0.0, high=2.0) from None
        if field == "user_prompt":
            raise InvalidInput("invalid_field", field=field, reason="not_blank") from None
        if field == "max_tokens":
            raise InvalidInput("invalid_field", field=field, reason="positive_int") from None
        # Any other field: pydantic's own reason.
        raise InvalidInput("invalid_field", field=field, reason="invalid", detail=first["msg"]) from None
    total = len(req.user_prompt) + len(req.system_prompt) + len(req.instructions) + sum(
        len(m.content) for m in req.conversation_history)
    if total > max_prompt_chars:
        raise InvalidInput("prompt_too_long", field="user_prompt", max=max_prompt_chars)
    if len(req.conversation_history) > max_messages:
        raise InvalidInput("too_many_messages", field="conversation_history", max=max_messages)
    user_api_key(req.openai_api_key, "openai_api_key")
    return req


def to_command(req: OriginalChatRequest, call: Call) -> ChatTurnCommand:
    """The original's upstream call: Responses API, input = [system] + history + [user],
    temperature, max_output_tokens = max_tokens, instructions when given."""
    system = [{"role": "system", "content": req.system_prompt}] if req.system_prompt.strip() else []
    params: dict[str, Any] = {"temperature": req.temperature, "max_output_tokens": req.max_tokens}
    instructions = req.instructions
    if call.settings.reply_language_policy and contains_hangul(req.user_prompt):
        instructions = f"{instructions}\n{KOREAN_REPLY_INSTRUCTION}".strip()
    if instructions:
        params["instructions"] = instructions
    return ChatTurnCommand(
        request_id="req_" + uuid.uuid4().hex, client=call.client, api=UpstreamApi.RESPONSES, model=req.model,
        route=call.route, new_messages=[{"role": "user", "content": req.user_prompt}], prompt=req.user_prompt,
        pii=call.pii,
        system=system, history=[m.model_dump() for m in req.conversation_history] or None,
        conversation_id=req.request_id or None, params=params, max_output_tokens=req.max_tokens,
        use_user_key=req.use_user_api_key, user_api_key=req.openai_api_key or None)


def _money_fields(cost: Money | None, rate: Decimal) -> dict[str, Any]:
    if cost is None:
        return {"cost": 0, "cost_usd": None, "cost_krw": None}
    return {"cost": cost.millicents, "cost_usd": float(cost.usd_rounded(8)), "cost_krw": float(cost.krw(rate))}


def success_body(cmd: ChatTurnCommand, result: ChatTurnResult, call: Call) -> dict[str, Any]:
    body = result.reply.body if result.reply else {}
    usage = result.usage
    return {
        "id": body.get("id") or "", "request_id": cmd.conversation_id or "", "object": "response",
        "created_at": int(body.get("created_at") or time.time()), "status": "completed", "model": result.model,
        "output_text": result.text, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_input_tokens,
        "reasoning_tokens": usage.reasoning_tokens, "text_format_type": "text",
        **_money_fields(result.cost, call.settings.usd_krw_rate),
        "response_time": round(time.perf_counter() - call.started, 4), "success": True, "error": None,
        "use_user_api_key": cmd.use_user_key,
        "key_source": result.key_source.value,
        "fallback_reason": result.fallback_reason.value if result.fallback_reason else None,
        "conversation_turn": result.turn_index,
    }


def error_body(error: DomainError, lang: str, started: float, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The original's 18-key failure object, plus a stable ``code``; the caller's request_id
    (when the body got that far) is echoed (the original always sent "")."""
    data = body or {}
    request_id = data.get("request_id")
    model = data.get("model")
    mapped = http_error(error)
    return {
        "id": "", "request_id": request_id[:200] if isinstance(request_id, str) else "", "object": "response",
        "created_at": int(time.time()), "status": "failed",
        "model": model[:100] if isinstance(model, str) and model else "gpt-4o-mini", "output_text": "",
        "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0,
        "text_format_type": "text", "cost": 0, "response_time": round(time.perf_counter() - started, 4),
        "success": False, "error": (mapped.prefix_en if lang == "en" else mapped.prefix_ko) + message_of(error, lang),
        "use_user_api_key": data.get("use_user_api_key") is True,
        "cost_usd": None, "cost_krw": None, "key_source": None, "fallback_reason": None, "conversation_turn": None,
        "code": error.code,
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class OriginalDialect(Dialect[ChatTurnCommand, ChatTurnResult]):
    """/api/v1/chat answers with the original's JSON object; /api/v1/chat/stream with
    ``delta`` events, then one ``done`` event carrying the same object (usage, cost)."""

    idempotent = True
    keyless = True

    def __init__(self, route: str, *, streams: bool) -> None:
        self.route, self._streams = route, streams

    def parse(self, body: dict[str, Any], call: Call) -> ChatTurnCommand:
        req = parse_request(body, call.settings.max_prompt_chars, call.settings.max_messages)
        return to_command(req, call)

    def wants_stream(self, body: Mapping[str, Any]) -> bool:
        return self._streams

    def model_of(self, command: ChatTurnCommand) -> str | None:
        return command.model

    def render(self, result: ChatTurnResult, command: ChatTurnCommand, call: Call) -> Response:
        return json_response(success_body(command, result, call))

    def render_event(self, event: StreamData | ChatTurnResult, command: ChatTurnCommand, call: Call) -> bytes | None:
        if isinstance(event, ChatTurnResult):
            return _sse("done", success_body(command, event, call))
        return _sse("delta", {"delta": event.text_delta}) if event.text_delta else None

    def render_stream_error(self, error: DomainError, command: ChatTurnCommand, call: Call) -> bytes:
        echo = {"request_id": command.conversation_id or "", "model": command.model,
                "use_user_api_key": command.use_user_key}
        return _sse("error", error_body(error, call.lang, call.started, echo))

    def render_error(self, error: DomainError, failure: Failure) -> Response:
        return json_response(error_body(error, failure.lang, failure.started, failure.body), http_error(error).status,
                             error_headers(error))


CHAT = OriginalDialect("/api/v1/chat", streams=False)
CHAT_STREAM = OriginalDialect("/api/v1/chat/stream", streams=True)
