"""In-memory fakes of every port, for unit tests of the core. They keep the same rules as
the real adapters (atomic reservations, idempotent ledger, owner-scoped history)."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.alerts import Alert
from domain.budgets import BudgetLine, HoldTag, Reservation, budget_exceeded, spend_lines
from domain.client_keys import BudgetLimits, ClientKey
from domain.conversations import Turn
from domain.errors import UpstreamError
from domain.ledger import UsageRecord
from domain.money import Money
from domain.pii import PiiPolicy
from domain.ports import HostSnapshot, StreamData, StreamDone, UpstreamReply, UpstreamRequest
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        self.ticks = 0.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        self.ticks += 0.001
        return self.ticks

    def advance(self, **kw: float) -> None:
        self.current += timedelta(**kw)


class InMemoryClientKeyRepository:
    def __init__(self) -> None:
        self.keys: dict[str, ClientKey] = {}

    async def add(self, key: ClientKey) -> None:
        self.keys[key.id] = key

    async def by_hash(self, key_hash: str) -> ClientKey | None:
        return next((k for k in self.keys.values() if k.key_hash == key_hash), None)

    async def get(self, key_id: str) -> ClientKey | None:
        return self.keys.get(key_id)

    async def list(self) -> Sequence[ClientKey]:
        return list(self.keys.values())

    async def revoke(self, key_id: str, at: datetime) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id].revoked_at = at
        return True

    async def set_limits(self, key_id: str, limits: BudgetLimits) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id].limits = limits
        return True

    async def set_pii_policy(self, key_id: str, policy: PiiPolicy | None) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id].pii_policy = policy
        return True

    async def set_expiry(self, key_id: str, expires_at: datetime | None) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id].expires_at = expires_at
        return True


class InMemoryBudgetStore:
    def __init__(self) -> None:
        self.spent_: dict[tuple[str, str], int] = {}
        self.reserved: dict[tuple[str, str], int] = {}
        self.open: dict[str, Reservation] = {}

    async def reserve(self, lines: Sequence[BudgetLine], amount: Money, tag: HoldTag | None = None) -> Reservation:
        for line in lines:
            key = (line.scope, line.period)
            used = self.spent_.get(key, 0) + self.reserved.get(key, 0)
            if line.limit is not None and used + amount.nanos > line.limit.nanos:
                raise budget_exceeded(line)
        for line in lines:
            key = (line.scope, line.period)
            self.reserved[key] = self.reserved.get(key, 0) + amount.nanos
        reservation = Reservation(uuid.uuid4().hex, tuple(lines), amount)
        self.open[reservation.id] = reservation
        return reservation

    async def settle(self, reservation: Reservation, actual: Money) -> None:
        self.settle_now(reservation, actual)

    def settle_now(self, reservation: Reservation, actual: Money, spent_on: Sequence[BudgetLine] | None = None) -> None:
        """Releases the hold (once) and counts ``actual`` on ``spent_on`` (default: the
        reservation's lines), as the SQL store and ledger do."""
        if self.open.pop(reservation.id, None) is None:
            return
        for line in reservation.lines:
            self.reserved[(line.scope, line.period)] -= reservation.amount.nanos
        self.count(spent_on if spent_on is not None else reservation.lines, actual)

    def count(self, lines: Sequence[BudgetLine], actual: Money) -> None:
        if not actual.nanos:
            return
        for line in lines:
            key = (line.scope, line.period)
            self.spent_[key] = self.spent_.get(key, 0) + actual.nanos

    async def release(self, reservation: Reservation) -> None:
        self.settle_now(reservation, Money.zero())

    async def spent(self, scope: str, period: str) -> Money:
        return Money(self.spent_.get((scope, period), 0))


class InMemoryConversationStore:
    """Implements both ConversationRepository and SpendLedger, the way the SQL ledger writes
    turns with their ledger rows."""

    def __init__(self, budgets: InMemoryBudgetStore | None = None) -> None:
        self.turns: dict[tuple[str | None, str], list[Turn]] = {}
        self.records: dict[str, UsageRecord] = {}
        self.budgets = budgets

    async def recent_turns(self, owner: str | None, conversation_id: str, limit: int) -> Sequence[Turn]:
        return self.turns.get((owner, conversation_id), [])[-limit:]

    def submit(self, record: UsageRecord) -> None:
        self._store(record)

    async def record(self, record: UsageRecord) -> int | None:
        return self._store(record)

    def _store(self, record: UsageRecord) -> int | None:
        if record.request_id in self.records:
            return None
        self.records[record.request_id] = record
        if self.budgets:
            lines = spend_lines(record.budget_owner, record.created_at)
            if record.reservation and record.reservation.id in self.budgets.open:
                self.budgets.settle_now(record.reservation, record.charged, spent_on=lines)
            else:
                self.budgets.count(lines, record.charged)
        if record.turn is None or record.conversation_id is None:
            return None
        turns = self.turns.setdefault((record.client_key_id, record.conversation_id), [])
        turns.append(replace(record.turn, turn_index=len(turns) + 1))
        return len(turns)


@dataclass
class FakeLlmProvider:
    """Answers like the project's fake OpenAI server: "fake reply to: <prompt>"; keys
    containing "invalid" are refused with 401, "quota" with insufficient_quota."""

    usage: TokenUsage = field(default_factory=lambda: TokenUsage(input_tokens=10, output_tokens=12))
    calls: list[tuple[UpstreamRequest, str]] = field(default_factory=list)
    fail_with: UpstreamError | None = None

    def _check(self, request: UpstreamRequest, api_key: str) -> None:
        self.calls.append((request, api_key))
        if "invalid" in api_key:
            raise UpstreamError("upstream_error", upstream_status=401, upstream_code="invalid_api_key", status=401,
                                message="Incorrect API key provided.")
        if "quota" in api_key:
            raise UpstreamError("upstream_error", upstream_status=429, upstream_code="insufficient_quota", status=429,
                                message="You exceeded your quota.")
        if self.fail_with:
            raise self.fail_with

    @staticmethod
    def _text(request: UpstreamRequest) -> str:
        last = next((m for m in reversed(request.messages) if isinstance(m, dict) and m.get("role") == "user"), {})
        return "fake reply to: " + str(last.get("content", ""))[:40]

    async def complete(self, request: UpstreamRequest, api_key: str) -> UpstreamReply:
        self._check(request, api_key)
        text = self._text(request)
        return UpstreamReply({"output_text": text}, request.model, text, self.usage)

    async def stream(self, request: UpstreamRequest, api_key: str) -> AsyncIterator[StreamData | StreamDone]:
        self._check(request, api_key)
        for word in self._text(request).split(" "):
            yield StreamData(word.encode(), word + " ")
        yield StreamDone(self.usage, request.model)

    async def get_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        return {"id": response_id, "status": "completed"}

    async def cancel_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        return {"id": response_id, "status": "cancelled"}

    async def delete_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        return {"id": response_id, "object": "response", "deleted": True}

    async def response_input_items(self, response_id: str, api_key: str,
                                   query: Mapping[str, str]) -> dict[str, Any]:
        return {"object": "list", "data": [], "has_more": False}

    async def list_models(self, api_key: str) -> list[str]:
        return ["gpt-4o-mini", "gpt-4o"]

    async def aclose(self) -> None:
        return None


class FakeHostMetrics:
    def __init__(self, snapshot: HostSnapshot | None = None, error: Exception | None = None) -> None:
        self._snapshot = snapshot or HostSnapshot(12.5, 40.0, 8 * 1024**3)
        self.error = error

    def snapshot(self) -> HostSnapshot:
        if self.error:
            raise self.error
        return self._snapshot

    def info(self) -> dict[str, Any]:
        if self.error:
            raise self.error
        return {"cpu": {"percent": self._snapshot.cpu_percent}}


class InMemoryRequestLog:
    """The request log as a list (same contract as ``SqlRequestLog.record``)."""

    def __init__(self) -> None:
        self.entries: list[RequestLogEntry] = []

    def record(self, entry: RequestLogEntry) -> None:
        self.entries.append(entry.cleaned())

    def counts(self) -> tuple[int, int]:
        """(requests, errors) as the overview counts them."""
        return len(self.entries), sum(1 for e in self.entries if e.is_error)


class InMemoryAlertClaims:
    def __init__(self) -> None:
        self.claimed: dict[tuple[str, str, str], Alert] = {}

    async def claim(self, alert: Alert, at: datetime) -> bool:
        key = (alert.kind.value, alert.subject, alert.period)
        if key in self.claimed:
            return False
        self.claimed[key] = alert
        return True


class FakeAlertSink:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert) -> bool:
        self.sent.append(alert)
        return True
