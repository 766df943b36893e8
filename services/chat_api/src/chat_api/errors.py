"""One table from domain error kinds to HTTP, and the two error dialects.

The original dialect answers every error with its 18-key body and a Korean prefix; the
OpenAI dialect with ``{"error": {...}}`` so the SDK raises the matching exception class.
"""
from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError, ErrorKind, InternalError, UpstreamError


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
    ErrorKind.RATE_LIMITED: HttpError(429, "요청 한도 초과: ", "Rate limited: ", "rate_limit_error"),
    ErrorKind.UPSTREAM: HttpError(503, "AI 서비스 연결 오류: ", "AI service connection error: ", "api_error"),
    ErrorKind.UPSTREAM_TIMEOUT: HttpError(504, "AI 서비스 연결 오류: ", "AI service connection error: ", "api_error"),
    ErrorKind.UNAVAILABLE: HttpError(503, "채팅 서비스 오류: ", "Chat service error: ", "api_error"),
    ErrorKind.CONFIGURATION: HttpError(500, "시스템 설정 오류: ", "System configuration error: ", "api_error"),
    ErrorKind.INTERNAL: HttpError(500, "시스템 오류가 발생했습니다: ", "A system error occurred: ", "api_error"),
}


def http_error(error: DomainError) -> HttpError:
    return ERROR_TABLE[error.kind]


def error_headers(error: DomainError) -> dict[str, str]:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    elif error.kind in (ErrorKind.UPSTREAM, ErrorKind.UPSTREAM_TIMEOUT, ErrorKind.UNAVAILABLE):
        headers["Retry-After"] = "1"
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
    return {"error": {"message": error.message(lang), "type": http_error(error).openai_type,
                      "param": error.field, "code": error.code}}


def internal_error() -> InternalError:
    """What a client sees of an unexpected failure (the details go to the log only)."""
    return InternalError("internal_error", "시스템 오류가 발생했습니다.", "A system error occurred.")
