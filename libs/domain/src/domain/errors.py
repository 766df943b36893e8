"""Domain errors: a stable machine-readable ``code`` with its parameters, and a kind the
entrypoints map to an HTTP status. The words (Korean by default, English on request) are
not here: an entrypoint renders them from its message catalogue, keyed by code (and
``reason``, when one code covers several cases)."""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    PII_DETECTED = "pii_detected"
    UPSTREAM = "upstream"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    UNAVAILABLE = "unavailable"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"


Param = str | int | float


class DomainError(Exception):
    """Base of every error a use case raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, code: str, *, field: str | None = None, reason: str | None = None,
                 retry_after: float | None = None, upstream_status: int | None = None, **params: Param) -> None:
        super().__init__(code if reason is None else f"{code}/{reason}")
        self.code = code
        self.reason = reason
        self.field = field
        self.params: dict[str, Param] = {"field": field, **params} if field is not None else dict(params)
        self.retry_after = retry_after
        self.upstream_status = upstream_status

    @property
    def message_key(self) -> str:
        """The message catalogue's key: ``code``, or ``code/reason``."""
        return self.code if self.reason is None else f"{self.code}/{self.reason}"


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


class PiiDetected(DomainError):
    """The request carries personal data and the policy is ``block``. Its one parameter,
    ``kinds``, lists the kinds found (contract codes, comma-separated), never a value."""

    kind = ErrorKind.PII_DETECTED

    @property
    def kinds(self) -> list[str]:
        return [k for k in str(self.params.get("kinds", "")).split(", ") if k]


class UpstreamError(DomainError):
    """The upstream answered with an error or could not be reached. ``body`` is the
    upstream's error body as it sent it and ``headers`` its relayed response headers (the
    OpenAI dialect passes a 4xx through unchanged)."""

    kind = ErrorKind.UPSTREAM
    upstream: str | None = None  # the upstream that answered so (set by the router)
    attempts: int = 1  # upstream calls made before giving up
    # No connection could be made (refused, name not resolved): nothing of the request was
    # sent, so it says something about the upstream, never about the request or its client.
    connect_failed: bool = False

    def __init__(self, code: str, *, reason: str | None = None, upstream_status: int | None = None,
                 upstream_code: str | None = None, retry_after: float | None = None,
                 body: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                 **params: Param) -> None:
        super().__init__(code, reason=reason, retry_after=retry_after, upstream_status=upstream_status)
        self.params.update(params)
        self.upstream_code = upstream_code
        self.body = body
        self.headers: Mapping[str, str] = headers or {}
        self.attempts = 1  # how many times the provider asked the upstream before giving up

    @property
    def rejects_key(self) -> bool:
        """The key itself was refused (bad, revoked, or out of quota) rather than the request."""
        return self.upstream_status in (401, 403) or self.upstream_code == "insufficient_quota"

    @property
    def may_be_billed(self) -> bool:
        """Whether the upstream may have done (and billed) the work: its failed call is then
        charged its hold, never released for free. A refusal or an unreachable upstream did not."""
        return False


class UpstreamTimeout(UpstreamError):
    """No answer in time. ``sent``: the upstream had the request (the wait for its answer
    timed out, not the connection), so it may be generating, and billing, still."""

    kind = ErrorKind.UPSTREAM_TIMEOUT
    sent: bool = False

    @property
    def may_be_billed(self) -> bool:
        return self.sent


class UserKeyNotAccepted(UpstreamError):
    """No upstream serving the request takes callers' own keys. It is an ``UpstreamError``
    with status 403 so the key policy may switch to the server key; when it may not, the
    caller gets a 403 (retrying would not help), not a 5xx."""

    kind = ErrorKind.FORBIDDEN


class UpstreamBadResponse(UpstreamError):
    """The upstream answered, but with something that is not a readable answer (not JSON,
    not an object, a connection dropped mid-answer). It may have billed the call, so the
    turn is charged its hold rather than released for free."""

    kind = ErrorKind.UPSTREAM_BAD_RESPONSE

    @property
    def may_be_billed(self) -> bool:
        return True


class UpstreamBusy(UpstreamError):
    """The client already has its share of upstream calls in flight: a 429 (a rate limit),
    raised as an upstream error so that the turn's budget hold is released and the refusal
    gets its ledger row like any call that did not go through."""

    kind = ErrorKind.RATE_LIMITED


class ServiceUnavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class ConfigurationError(DomainError):
    kind = ErrorKind.CONFIGURATION


class InternalError(DomainError):
    """Something the code did not expect; the entrypoints answer with it instead of a traceback."""

    kind = ErrorKind.INTERNAL


def no_api_key() -> ConfigurationError:
    return ConfigurationError("no_api_key")
