"""Errors at the HTTP edge: the table from domain error kinds to HTTP statuses, and beside it
the one bilingual message catalogue, keyed by error code (``code/reason`` where one code
covers several cases). Messages are ``str.format`` templates over the error's parameters.

The original dialect answers every error with its 18-key body and a Korean prefix; the
OpenAI dialect with ``{"error": {...}}`` so the SDK raises the matching exception class.
"""
from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError, ErrorKind, InternalError, UpstreamError
from domain.pii import KOREAN_NAME


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    prefix_ko: str
    prefix_en: str
    openai_type: str


ERROR_TABLE: dict[ErrorKind, HttpError] = {
    ErrorKind.INVALID_INPUT: HttpError(400, "입력 데이터 오류: ", "Invalid input: ", "invalid_request_error"),
    ErrorKind.TOO_LARGE: HttpError(413, "입력 데이터 오류: ", "Invalid input: ", "invalid_request_error"),
    ErrorKind.UNAUTHORIZED: HttpError(401, "인증 오류: ", "Authentication error: ", "authentication_error"),
    ErrorKind.FORBIDDEN: HttpError(403, "권한 오류: ", "Permission error: ", "permission_error"),
    ErrorKind.NOT_FOUND: HttpError(404, "찾을 수 없음: ", "Not found: ", "not_found_error"),
    ErrorKind.CONFLICT: HttpError(422, "요청 충돌: ", "Conflict: ", "invalid_request_error"),
    ErrorKind.BUDGET_EXCEEDED: HttpError(402, "예산 초과: ", "Budget exceeded: ", "insufficient_quota"),
    ErrorKind.PII_DETECTED: HttpError(400, "개인정보 보호: ", "Personal data protection: ", "invalid_request_error"),
    ErrorKind.RATE_LIMITED: HttpError(429, "요청 한도 초과: ", "Rate limited: ", "rate_limit_error"),
    ErrorKind.UPSTREAM: HttpError(503, "AI 서비스 연결 오류: ", "AI service connection error: ", "api_error"),
    ErrorKind.UPSTREAM_TIMEOUT: HttpError(504, "AI 서비스 연결 오류: ", "AI service connection error: ", "api_error"),
    ErrorKind.UPSTREAM_BAD_RESPONSE: HttpError(502, "AI 서비스 응답 오류: ", "AI service answer error: ", "api_error"),
    ErrorKind.UNAVAILABLE: HttpError(503, "채팅 서비스 오류: ", "Chat service error: ", "api_error"),
    ErrorKind.CONFIGURATION: HttpError(500, "시스템 설정 오류: ", "System configuration error: ", "api_error"),
    ErrorKind.INTERNAL: HttpError(500, "시스템 오류가 발생했습니다: ", "A system error occurred: ", "api_error"),
}


# code (or code/reason) → (Korean, English)
MESSAGES: dict[str, tuple[str, str]] = {
    # request bodies and headers
    "invalid_json/syntax": ("요청 본문이 올바른 JSON이 아닙니다.", "The request body is not valid JSON."),
    "invalid_json/not_object": ("요청 본문은 JSON 객체여야 합니다.", "The request body must be a JSON object."),
    "invalid_json/too_deep": ("JSON 중첩이 너무 깊습니다 (최대 {max}단계).", "The JSON is nested too deeply (max {max} levels)."),
    "body_too_large": ("요청 본문이 너무 큽니다 (최대 {max} 바이트).", "The request body is too large (max {max} bytes)."),
    "nul_character": ("문자열에 NUL 문자를 넣을 수 없습니다.", "Strings may not contain NUL characters."),
    "forbidden_field": ("허용되지 않는 필드입니다: {name}", "Field not allowed: {name}"),
    "invalid_field/required_string": ("{field}은(는) 필수 문자열입니다.", "{field} is required and must be a string."),
    "invalid_field/not_blank": ("{field}은(는) 비어 있을 수 없습니다.", "{field} is required and must not be blank."),
    "invalid_field/not_empty": ("{field}은(는) 비어 있을 수 없습니다.", "{field} must not be empty."),
    "invalid_field/string": ("{field}은(는) 문자열이어야 합니다.", "{field} must be a string."),
    "invalid_field/boolean": ("{field}은(는) true 또는 false여야 합니다.", "{field} must be a boolean."),
    "invalid_field/object": ("{field}은(는) 객체여야 합니다.", "{field} must be an object."),
    "invalid_field/positive_int": ("{field}은(는) 0보다 큰 정수여야 합니다.", "{field} must be an integer greater than 0."),
    "invalid_field/between": ("{field}은(는) {low} 이상 {high} 이하여야 합니다.", "{field} must be between {low} and {high}."),
    "invalid_field/non_empty_array": ("{field}은(는) 비어 있지 않은 배열이어야 합니다.", "{field} must be a non-empty array."),
    "invalid_field/string_or_array": ("{field}은(는) 문자열 또는 비어 있지 않은 배열이어야 합니다.",
                                      "{field} must be a string or a non-empty array."),
    "invalid_field/valid_role": ("{field}의 각 항목에는 올바른 role이 있어야 합니다.", "Each item of {field} needs a valid role."),
    "invalid_field/printable_text": ("{field}은(는) {max}자 이하의 출력 가능한 문자여야 합니다.",
                                     "{field} must be at most {max} printable characters."),
    "invalid_field/status_filter": ("{field} 값이 올바르지 않습니다 (예: 402, 4xx, error).",
                                    "Invalid {field} filter (e.g. 402, 4xx, error)."),
    "invalid_field/invalid": ("{field} 값이 올바르지 않습니다: {detail}", "Invalid value for {field}: {detail}"),
    "invalid_field/with_until": ("{field}은(는) until과 함께 보내야 합니다.", "{field} must be sent with until."),
    "invalid_field/embedding_input": ("{field}은(는) 비어 있지 않은 문자열, 문자열 배열(최대 {max}개) 또는 토큰 배열이어야 합니다.",
                                      "{field} must be a non-empty string, or an array (at most {max} items) of "
                                      "non-empty strings or of token arrays."),
    "invalid_field/moderation_input": ("{field}은(는) 비어 있지 않은 문자열, 문자열 배열 또는 type이 있는 파트의 배열이어야 합니다.",
                                       "{field} must be a non-empty string, an array of strings or an array of typed parts."),
    "invalid_field/one_of": ("{field}은(는) 다음 중 하나여야 합니다: {values}", "{field} must be one of: {values}"),
    "invalid_field/content_type": ("{field}은(는) 문자열 또는 type이 있는 파트의 배열이어야 합니다 "
                                   "(null은 도구를 호출하는 assistant 메시지만 가능).",
                                   "{field} must be a string or an array of parts with a type "
                                   "(null only for an assistant message that calls tools)."),
    "too_many_messages": ("메시지가 너무 많습니다 (최대 {max}개).", "Too many messages (max {max})."),
    "prompt_too_long": ("프롬프트가 너무 깁니다 (최대 {max}자).", "The prompt is too long (max {max} characters)."),
    "invalid_response_id": ("응답 ID 형식이 올바르지 않습니다.", "Malformed response id."),
    "invalid_idempotency_key": ("Idempotency-Key는 1~200자의 출력 가능한 문자여야 합니다.",
                                "Idempotency-Key must be 1-200 printable characters."),
    "invalid_user_api_key": ("OpenAI API 키 형식이 올바르지 않습니다 (공백 없는 ASCII 문자, 최대 {max}자).",
                             "Malformed OpenAI API key (ASCII without spaces, at most {max} characters)."),
    "invalid_time_range": ("시작 시각은 종료 시각보다 앞서야 합니다.", "'since' must be earlier than 'until'."),
    "invalid_key_name": ("키 이름은 1~100자여야 합니다.", "A key name must be 1-100 characters."),
    "invalid_budget": ("예산은 0 이상이어야 합니다.", "A budget cannot be negative."),
    # models
    "unknown_model": ("지원하지 않는 모델입니다: {model}", "Unknown or disallowed model: {model}"),
    "unpriced_service_tier": ("이 서비스 등급은 가격표에 없어 예산이 있는 키로 사용할 수 없습니다: {tier}",
                              "This service tier is not priced, so keys with a budget cannot use it: {tier}"),
    "unpriced_model": ("가격이 정해지지 않은 모델은 서버 키 예산으로 사용할 수 없습니다: {model}",
                       "Model {model} has no price, so it cannot be used on a budgeted server key."),
    "upstream_bad_response": ("AI 서비스가 읽을 수 없는 응답을 보냈습니다.", "The AI service sent an answer that could not be read."),
    "input_not_estimable": ("크기를 미리 알 수 없는 입력({kinds})은 예산이 적용되는 키로 보낼 수 없습니다. 자신의 OpenAI 키를 사용하세요.",
                            "Input whose size cannot be known in advance ({kinds}) cannot be sent on a budgeted key; "
                            "use your own OpenAI key."),
    "max_tokens_too_large": ("max_tokens가 이 모델의 최대값({max})을 넘습니다.", "max_tokens exceeds this model's maximum ({max})."),
    # who is calling
    # Said in both languages in the default (Korean) message: a client of the original server
    # that sends no key and no Accept-Language learns what to add.
    "invalid_client_key": ("클라이언트 키가 없거나 올바르지 않습니다. 운영자에게 받은 키를 'Authorization: Bearer <클라이언트 키>' "
                           "헤더로 보내세요. / The client key is missing or invalid: add the header "
                           "'Authorization: Bearer <client key>' with the key your operator issued.",
                           "The client key is missing or invalid: add the header 'Authorization: Bearer <client key>' "
                           "with the key your operator issued (llmctl keys create)."),
    "client_key_revoked": ("폐기된 클라이언트 키입니다.", "This client key has been revoked."),
    "client_key_expired": ("만료된 클라이언트 키입니다. 관리자에게 새 키를 요청하세요.",
                           "This client key has expired. Ask the operator for a new key."),
    "invalid_expiry": ("만료 시각은 미래여야 합니다 (지금 멈추려면 키를 폐기하세요).",
                       "The expiry must be in the future (to stop a key now, revoke it)."),
    "invalid_admin_token": ("관리자 토큰이 없거나 올바르지 않습니다.", "The admin token is missing or invalid."),
    "server_key_not_allowed": ("이 클라이언트 키는 서버 API 키를 사용할 수 없습니다. 자신의 OpenAI 키를 보내 주세요.",
                               "This client key may not use the server's API key; send your own OpenAI key."),
    "no_api_key": ("사용 가능한 API Key가 없습니다.", "No API key is available."),
    "user_key_not_accepted": ("이 모델({model})은 자신의 API 키로 사용할 수 없습니다.",
                              "Model {model} cannot be used with your own API key."),
    "user_key_not_accepted/stored_response": ("저장된 응답은 자신의 API 키로 조회할 수 없습니다.",
                                              "Stored responses cannot be reached with your own API key."),
    # not found
    "client_key_not_found": ("클라이언트 키를 찾을 수 없습니다.", "Client key not found."),
    "conversation_not_found": ("대화를 찾을 수 없습니다.", "Conversation not found."),
    "request_not_found": ("요청을 찾을 수 없습니다.", "Request not found."),
    "response_not_found": ("응답을 찾을 수 없습니다.", "No such response."),
    "model_not_found": ("모델을 찾을 수 없습니다: {model}", "The model '{model}' does not exist or is not served here."),
    "route_not_found": ("없는 경로입니다: {method} {path}", "Invalid URL ({method} {path})."),
    "method_not_allowed": ("이 경로에는 이 메서드를 쓸 수 없습니다: {method} {path}", "Invalid method for URL ({method} {path})."),
    "unsupported_endpoint": ("이 게이트웨이는 {path}을(를) 지원하지 않습니다. /v1/chat/completions 또는 /v1/responses를 "
                             "사용하세요.", "This gateway does not serve {path}; use /v1/chat/completions or /v1/responses."),
    # limits
    "budget_exceeded": ("{scope} {period} 예산을 초과했습니다. 나중에 다시 시도하거나 운영자에게 문의하세요.",
                        "The {scope} {period} budget is exhausted. Try again later or ask an operator."),
    "rate_limited": ("분당 {unit} 한도({limit})를 넘었습니다. {seconds}초 후 다시 시도하세요.",
                     "Over the limit of {limit} {unit} per minute. Retry in {seconds} s."),
    "too_many_streams": ("동시 스트림이 너무 많습니다 (최대 {max}개).", "Too many concurrent streams (max {max})."),
    "too_many_concurrent_requests": ("동시에 처리 중인 요청이 너무 많습니다 (최대 {max}개).",
                                     "Too many requests in flight at once (max {max})."),
    "idempotency_key_reused": ("같은 Idempotency-Key가 다른 요청 본문과 함께 쓰였습니다.",
                               "This Idempotency-Key was used with a different request body."),
    # personal data under PII_POLICY=block (the kinds, never the values)
    "pii_detected": ("요청에 개인정보({kinds})가 포함되어 있어 보내지 않았습니다. 해당 값을 지우거나 가린 뒤 다시 보내 주세요.",
                     "The request contains personal data ({kinds}) and was not sent; remove or mask it and try again."),
    "idempotency_in_progress": ("같은 Idempotency-Key의 요청이 아직 처리 중입니다.",
                                "A request with this Idempotency-Key is still in progress."),
    # the upstream and the system
    "upstream_error": ("OpenAI 오류 ({status}): {message}", "OpenAI error ({status}): {message}"),
    "upstream_key_refused": ("AI 서비스가 서버의 API 키를 거부했습니다. 운영자에게 알려 주세요.",
                             "The AI service refused the server's API key; please tell the operator."),
    "upstream_circuit_open": ("OpenAI 호출이 잇따라 실패해 잠시 중단했습니다.", "Calls to OpenAI keep failing; paused briefly."),
    "upstream_timeout": ("OpenAI 응답 시간이 초과되었습니다.", "OpenAI did not answer in time."),
    "upstream_unreachable": ("OpenAI 서버에 연결할 수 없습니다.", "Could not connect to OpenAI."),
    "database_unavailable": ("데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
                             "The database is unavailable; try again shortly."),
    "internal_error": ("시스템 오류가 발생했습니다.", "A system error occurred."),
}

# Parameter values that are words themselves: (Korean, English).
WORDS: dict[str, dict[str, tuple[str, str]]] = {
    "scope": {"key": ("이 클라이언트 키의", "client key's"), "global": ("전체 서버", "server-wide")},
    "period": {"daily": ("일일", "daily"), "monthly": ("월간", "monthly")},
    "unit": {"requests": ("요청", "requests"), "tokens": ("토큰", "tokens")},
    # a comma-separated list: each item is a word (the kinds' codes in English, names in Korean)
    "kinds": {kind.value: (name, kind.value) for kind, name in KOREAN_NAME.items()},
}


class _Params(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"  # a template naming a parameter the raise site did not give (the catalogue test forbids it)


def _words(words: dict[str, tuple[str, str]], value: object, english: bool) -> object:
    """A parameter value in words: one word, or a ", "-separated list of them (as is when unknown)."""
    items = str(value).split(", ")
    if not all(item in words for item in items):
        return value
    return ", ".join(words[item][english] for item in items)


def message_of(error: DomainError, lang: str = "ko") -> str:
    """The error's message in ``lang`` ("en", else Korean)."""
    ko, en = MESSAGES.get(error.message_key, MESSAGES["internal_error"])
    english = lang == "en"
    params = _Params({name: _words(WORDS[name], value, english) if name in WORDS else value
                      for name, value in error.params.items()})
    return (en if english else ko).format_map(params)


def http_error(error: DomainError) -> HttpError:
    return ERROR_TABLE[error.kind]


def error_headers(error: DomainError, *, default_retry_after: bool = True) -> dict[str, str]:
    """Retry-After (the upstream's or ours; 1 s for upstream trouble unless
    ``default_retry_after`` is off); ``x-should-retry: false`` when the gateway already
    retried the upstream itself, so an SDK does not multiply the attempts."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    elif default_retry_after and error.kind in (ErrorKind.UPSTREAM, ErrorKind.UPSTREAM_TIMEOUT,
                                                ErrorKind.UPSTREAM_BAD_RESPONSE, ErrorKind.UNAVAILABLE):
        headers["Retry-After"] = "1"
    if isinstance(error, UpstreamError) and error.attempts > 1:
        headers["x-should-retry"] = "false"
    return headers


_PASSED_THROUGH = {400, 401, 403, 404, 409, 422, 429}


def openai_status(error: DomainError) -> int:
    """The OpenAI dialect passes the upstream's client-side statuses through, so the SDK
    raises the same exception it would against OpenAI (a bad user key → 401, an unknown
    response id → 404, a rate limit after our retries → 429)."""
    if isinstance(error, UpstreamError) and error.upstream_status in _PASSED_THROUGH:
        return error.upstream_status
    return http_error(error).status


def openai_error_body(error: DomainError, lang: str) -> dict[str, object]:
    return {"error": {"message": message_of(error, lang), "type": http_error(error).openai_type,
                      "param": error.field, "code": error.code}}


def internal_error() -> InternalError:
    """What a client sees of an unexpected failure (the details go to the log only)."""
    return InternalError("internal_error")
