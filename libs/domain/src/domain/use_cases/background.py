"""Settling background responses: the ledger row of a request answered ``queued``."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from domain.ledger import Outcome, UsageRecord
from domain.pii import PiiPolicy, PiiScanner
from domain.ports import PriceCatalog
from domain.usage import TokenUsage

TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})


def backoff_seconds(attempts: int, first: float = 1.0, cap: float = 60.0) -> float:
    """Polling a background response: first after ``first`` seconds, then doubling, never
    more than ``cap`` between two looks."""
    return float(min(cap, first * 2.0 ** min(attempts, 16)))


def settle_background(template: UsageRecord, *, status: str, usage: TokenUsage | None, model: str | None,
                      text: str, prices: PriceCatalog, now: datetime,
                      pii_policy: PiiPolicy = PiiPolicy.OFF) -> UsageRecord:
    """The ledger row of a finished background response: its final usage priced like any
    turn. A terminal response without usage (or one given up on) is charged its hold —
    the worst case admitted — and marked estimated, never recorded as free. The stored
    reply is masked under the request's ``pii_policy`` like any turn's (never counted: the
    request's counts are already on the record)."""
    model = model or template.model
    outcome = Outcome.OK if status == "completed" else Outcome.ERROR
    turn = replace(template.turn, reply=PiiScanner(pii_policy).stored(text), created_at=now) if template.turn is not None else None
    if usage is not None and usage.anomaly is None:
        price = prices.price_of(model, template.upstream) or prices.price_of(template.model, template.upstream)
        return replace(template, created_at=now, model=model, usage=usage,
                       cost=None if price is None else price.cost(usage), outcome=outcome, turn=turn,
                       error_code=None if status == "completed" else f"background_{status}")
    held = template.reservation.amount if template.reservation else template.cost
    return replace(template, created_at=now, model=model, usage=usage or TokenUsage(anomaly="usage_missing"),
                   cost=held, estimated=True, outcome=outcome, turn=turn,
                   error_code=None if status == "completed" else f"background_{status}")
