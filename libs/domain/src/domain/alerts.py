"""Operator alerts: a key about to run out of budget, an upstream circuit opened, too many
errors right now. Each alert fires once per period: the first replica to claim
(kind, subject, period) sends it, every later attempt is a no-op.

The rules here decide *whether* and *what*; ``AlertSink`` delivers (a Slack-compatible
webhook) and ``AlertClaims`` remembers what was sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from domain.money import Money
from domain.periods import KST, day_key, month_key

DEFAULT_BUDGET_PCT = Decimal(80)
DEFAULT_ERROR_RATE = 0.2
ERROR_RATE_WINDOW_SECONDS = 300
CIRCUIT_PERIOD_SECONDS = 900
MIN_REQUESTS_FOR_RATE = 5  # one failed request out of two is not an outage


class AlertKind(StrEnum):
    BUDGET = "budget"
    CIRCUIT = "circuit"
    ERROR_RATE = "error_rate"


@dataclass(frozen=True, slots=True)
class Alert:
    """``text`` is what a human reads (Korean first); ``fields`` go into the JSON body beside
    ``text`` and ``kind``. (kind, subject, period) identifies it for once-per-period."""

    kind: AlertKind
    subject: str
    period: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind.value, "subject": self.subject, "period": self.period,
                **self.fields}


class AlertSink(Protocol):
    """Where alerts go. ``send`` raises nothing: a webhook that is down loses the alert (it
    is still listed in the console)."""

    async def send(self, alert: Alert) -> bool: ...


class AlertClaims(Protocol):
    """Alerts already raised, shared by every replica."""

    async def claim(self, alert: Alert, at: datetime) -> bool:
        """True for the first claim of (kind, subject, period) only, atomically."""


def budget_alert(*, key_id: str, key_name: str, period: str, spent: Money, cap: Money | None,
                 threshold_pct: Decimal = DEFAULT_BUDGET_PCT, now: datetime, tz: tzinfo = KST,
                 budget_key_id: str | None = None) -> Alert | None:
    """A key's spend in its current day ("day") or month ("month") at or over
    ``threshold_pct`` of that cap. Uncapped keys never alert; a zero cap is always full.
    Once per budget and period: a key rotated into carries on its predecessor's budget
    (``budget_key_id``, ``ClientKey.budget_owner``), and with it the alert already raised."""
    if cap is None:
        return None
    if cap.nanos > 0 and Decimal(spent.nanos) * 100 < threshold_pct * cap.nanos:
        return None
    pct = Decimal(100) if cap.nanos <= 0 else (Decimal(spent.nanos) * 100 / cap.nanos).quantize(Decimal(1))
    key = day_key(now, tz) if period == "day" else month_key(now, tz)
    which, which_en = ("일일", "daily") if period == "day" else ("월간", "monthly")
    spent_s, cap_s = spent.usd_rounded(2), cap.usd_rounded(2)
    text = (f"[예산] 클라이언트 키 '{key_name}'이(가) {which} 예산의 {pct}%를 사용했습니다 "
            f"(${spent_s} / ${cap_s}). / Client key '{key_name}' used {pct}% of its {which_en} budget.")
    return Alert(AlertKind.BUDGET, f"key:{budget_key_id or key_id}:{period}", key, text,
                 {"key_id": key_id, "key_name": key_name, "period": key, "percent": int(pct),
                  "spent_usd": str(spent_s), "cap_usd": str(cap_s)})


def circuit_alert(*, upstream: str, now: datetime, detail: str = "") -> Alert:
    """An upstream's circuit opened: once per upstream per 15 minutes."""
    bucket = int(now.astimezone(UTC).timestamp()) // CIRCUIT_PERIOD_SECONDS
    text = (f"[장애] 업스트림 '{upstream}'의 회로가 열렸습니다: 요청이 거절되고 있습니다. "
            f"/ The circuit to upstream '{upstream}' opened.")
    return Alert(AlertKind.CIRCUIT, f"upstream:{upstream}", f"c:{bucket}", text,
                 {"upstream": upstream, **({"detail": detail} if detail else {})})


def error_rate_alert(*, requests: int, errors: int, threshold: float = DEFAULT_ERROR_RATE,
                     now: datetime) -> Alert | None:
    """The last 5 minutes' share of answers with status >= 400 above ``threshold``: once
    per 5-minute window (and never on a handful of requests)."""
    if requests < MIN_REQUESTS_FOR_RATE or errors / requests <= threshold:
        return None
    bucket = int(now.astimezone(UTC).timestamp()) // ERROR_RATE_WINDOW_SECONDS
    rate = errors / requests
    text = (f"[오류율] 최근 5분 오류율 {rate:.0%} ({errors}/{requests}건), 기준 {threshold:.0%} 초과. "
            f"/ Error rate {rate:.0%} over the last 5 minutes ({errors}/{requests}).")
    return Alert(AlertKind.ERROR_RATE, "requests", f"e:{bucket}", text,
                 {"requests": requests, "errors": errors, "rate": round(rate, 4), "threshold": threshold})


class Raised(StrEnum):
    ALREADY = "already"  # raised before this period, by this or another replica
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # raised (listed) but no webhook, or the webhook failed

    def __bool__(self) -> bool:
        return self is not Raised.ALREADY


class RaiseAlert:
    """Sends an alert unless it was already raised this period (by any replica). The claim
    comes first: a webhook that fails is not retried into duplicates."""

    def __init__(self, claims: AlertClaims, sink: AlertSink | None) -> None:
        self._claims, self._sink = claims, sink

    async def execute(self, alert: Alert, at: datetime) -> Raised:
        if not await self._claims.claim(alert, at):
            return Raised.ALREADY
        if self._sink is not None and await self._sink.send(alert):
            return Raised.DELIVERED
        return Raised.UNDELIVERED
