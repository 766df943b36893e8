"""The request log: what every client saw, one entry per client request.

The ledger counts money (rows for what reached an upstream, two for an own-key attempt that
fell back); the request log counts requests. A refusal before any upstream call (400, 401,
402, 403, 429) is a request with an error; a fallback is one request; an error is a status
of 400 or more. The console's request counts and error rates come from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from domain.money import Money

MAX_ID = 200
MAX_ROUTE = 64
MAX_CODE = 64
MAX_MODEL = 100
MAX_UPSTREAM = 64
MAX_KIND = 32


def _clip(value: str | None, size: int) -> str | None:
    # Ids and model names come from callers and upstreams and may be of any length or carry
    # NUL bytes or lone surrogates (which PostgreSQL text and UTF-8 refuse): the log keeps a
    # clean prefix, never fails.
    if value is None:
        return None
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in value[:size])


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    """One client request as the client saw it. ``status`` is the HTTP status answered;
    ``cost`` is what the request was charged (None: nothing reached an upstream, or the
    model is unpriced); ``latency_ms`` is the time to the full answer; ``ttft_ms`` a
    stream's time to its first event (None: not a stream, or refused before it started);
    ``pii_counts`` the personal data the guard found in it per kind (``{"rrn": 1, "card": 2}``;
    masked, sent under ``off``, or the reason of a ``pii_detected`` refusal), never a value."""

    request_id: str
    created_at: datetime
    route: str
    status: int
    client_key_id: str | None = None
    error_code: str | None = None
    model: str | None = None
    key_source: str | None = None
    fallback_reason: str | None = None
    upstream: str | None = None
    latency_ms: int = 0
    cost: Money | None = None
    ttft_ms: int | None = None
    pii_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    def cleaned(self) -> RequestLogEntry:
        """The entry with every caller-controlled text bounded to its column."""
        return RequestLogEntry(
            request_id=_clip(self.request_id, MAX_ID) or "", created_at=self.created_at,
            route=_clip(self.route, MAX_ROUTE) or "", status=int(self.status),
            client_key_id=_clip(self.client_key_id, 32), error_code=_clip(self.error_code, MAX_CODE),
            model=_clip(self.model, MAX_MODEL), key_source=_clip(self.key_source, 8),
            fallback_reason=_clip(self.fallback_reason, 32), upstream=_clip(self.upstream, MAX_UPSTREAM),
            latency_ms=max(0, int(self.latency_ms)), cost=self.cost,
            ttft_ms=None if self.ttft_ms is None else max(0, int(self.ttft_ms)),
            pii_counts={str(k)[:MAX_KIND]: int(n) for k, n in self.pii_counts.items() if int(n) > 0})
