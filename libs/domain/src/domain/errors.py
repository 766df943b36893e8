"""Domain errors: a stable machine-readable ``code``, a kind the entrypoints map to an HTTP
status, and the message in Korean (default) and English."""
from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    UPSTREAM = "upstream"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UNAVAILABLE = "unavailable"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, code: str, ko: str, en: str, *, field: str | None = None,
                 retry_after: float | None = None, upstream_status: int | None = None) -> None:
        super().__init__(en)
        self.code = code
        self.ko = ko
        self.en = en
        self.field = field
        self.retry_after = retry_after
        self.upstream_status = upstream_status

    def message(self, lang: str = "ko") -> str:
        return self.en if lang == "en" else self.ko


class InvalidInput(DomainError):
    kind = ErrorKind.INVALID_INPUT


class TooLarge(DomainError):
    """The request exceeds a size limit before it is even read whole."""

    kind = ErrorKind.TOO_LARGE


class Unauthorized(DomainError):
    kind = ErrorKind.UNAUTHORIZED


class Forbidden(DomainError):
    kind = ErrorKind.FORBIDDEN


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class Conflict(DomainError):
    kind = ErrorKind.CONFLICT


class BudgetExceeded(DomainError):
    kind = ErrorKind.BUDGET_EXCEEDED


class RateLimited(DomainError):
    kind = ErrorKind.RATE_LIMITED


class UpstreamError(DomainError):
    """The upstream answered with an error or could not be reached."""

    kind = ErrorKind.UPSTREAM
    upstream: str | None = None  # the upstream that answered so (set by the router)
    attempts: int = 1  # upstream calls made before giving up

    def __init__(self, code: str, ko: str, en: str, *, upstream_status: int | None = None,
                 upstream_code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(code, ko, en, retry_after=retry_after, upstream_status=upstream_status)
        self.upstream_code = upstream_code

    @property
    def rejects_key(self) -> bool:
        """The key itself was refused (bad, revoked, or out of quota) rather than the request."""
        return self.upstream_status in (401, 403) or self.upstream_code == "insufficient_quota"


class UpstreamTimeout(UpstreamError):
    kind = ErrorKind.UPSTREAM_TIMEOUT


class ServiceUnavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class ConfigurationError(DomainError):
    kind = ErrorKind.CONFIGURATION


def no_api_key() -> ConfigurationError:
    return ConfigurationError("no_api_key", "사용 가능한 API Key가 없습니다.", "No API key is available.")


def invalid(field: str, code: str, ko: str, en: str) -> InvalidInput:
    return InvalidInput(code, ko, en, field=field)
