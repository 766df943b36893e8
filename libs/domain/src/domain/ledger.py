"""What the spend ledger records for every request that reached (or tried to reach) the upstream."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.budgets import Reservation
from domain.conversations import Turn
from domain.key_policy import FallbackReason, KeySource
from domain.money import Money
from domain.usage import TokenUsage


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    ABORTED = "aborted"  # the client went away mid-stream
    # The replica died between taking the budget hold and storing the row: the hold is the
    # write-ahead record, charged at the held amount (estimated) once it is stale.
    ORPHANED = "orphaned"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One ledger row. ``cost`` None means the model is unpriced; ``estimated`` that the
    usage was estimated because the upstream never reported it (a stream cut short).

    Storing a record also settles its budget reservation and stores its turn, in one
    transaction, so budgets, spend and history never disagree.
    """

    request_id: str
    created_at: datetime
    client_key_id: str | None
    route: str
    model: str
    usage: TokenUsage
    cost: Money | None
    catalog_version: str
    key_source: KeySource
    outcome: Outcome = Outcome.OK
    estimated: bool = False
    latency_ms: int = 0
    fallback_reason: FallbackReason | None = None
    conversation_id: str | None = None
    reservation: Reservation | None = None
    turn: Turn | None = None
    error_code: str | None = None
    response_id: str | None = None  # the upstream's id of the answer; its owner may fetch it later
    upstream: str | None = None  # the name of the upstream that served (or last refused) it
    upstream_attempts: int = 1  # calls it took (a failover is still one row, charged once)
    pii_counts: Mapping[str, int] = field(default_factory=dict)  # personal data found per kind (never values)
    # The key whose budget counters are charged (ClientIdentity.budget_key_id: a rotated key
    # shares its chain's); None: client_key_id's own.
    budget_key_id: str | None = None

    @property
    def budget_owner(self) -> str | None:
        """The key id whose budget the charge counts on (``budgets.spend_lines``)."""
        return self.budget_key_id or self.client_key_id

    @property
    def owner(self) -> str | None:
        """Whose conversation the request's turn belongs to (``ClientIdentity.owner``): the
        rotation chain of its key, named by the chain's first key id, the same id as the
        budget's. None: anonymous."""
        return self.budget_owner

    @property
    def priced(self) -> bool:
        return self.cost is not None

    @property
    def charged(self) -> Money:
        """What the server's budget pays: nothing when the caller's own key paid. When the
        upstream's usage could not be taken as given (negative, missing, not numbers), at
        least the request's hold — the worst case admitted — so an upstream's bad
        arithmetic never makes a call free."""
        if self.key_source is KeySource.USER or self.cost is None:
            return Money.zero()
        if self.usage.anomaly is not None and self.reservation is not None \
                and self.reservation.amount.nanos > self.cost.nanos:
            return self.reservation.amount
        return self.cost
