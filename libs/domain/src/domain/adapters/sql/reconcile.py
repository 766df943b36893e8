"""Budget counters against the ledger: what ``llmctl ledger reconcile`` checks.

Every stored ledger row adds its charge to its ``spend_lines`` counters in the same
transaction, and every open hold adds its amount to its lines' ``reserved``; so, for each
counter, ``spent`` must equal the sum of its rows' charges and ``reserved`` the sum of its
open holds. Any difference (the drift) is money counted without a row, or a row never
counted.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlmodel import col

from domain.adapters.sql.tables import BudgetCounterRow, BudgetReservationRow, SpendRow
from domain.budgets import day_period, month_period, spend_lines


@dataclass(frozen=True, slots=True)
class CounterDrift:
    scope: str
    period: str
    counter_spent: int  # nano-USD
    ledger_spent: int
    counter_held: int
    open_holds: int

    @property
    def spent_drift(self) -> int:
        return self.counter_spent - self.ledger_spent

    @property
    def held_drift(self) -> int:
        return self.counter_held - self.open_holds


def _first_periods(since: datetime | None) -> tuple[str, str]:
    if since is None:
        return "d:", "m:"
    return day_period(since), month_period(since)


def _in_range(period: str, first_day: str, first_month: str) -> bool:
    return period >= first_day if period.startswith("d:") else period >= first_month


def reconcile(engine: Engine, since: datetime | None = None) -> list[CounterDrift]:
    """Every counter of the periods from ``since``'s day and month on (all when None), with
    its ledger and hold sums. Rows are read from the start of ``since``'s month, so a
    monthly counter is compared whole."""
    first_day, first_month = _first_periods(since)
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    holds: dict[tuple[str, str], int] = defaultdict(int)
    counters: dict[tuple[str, str], tuple[int, int]] = {}
    month_start = None if since is None else since.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        rows = select(col(SpendRow.client_key_id), col(SpendRow.created_at), col(SpendRow.charged_nanos))
        if month_start is not None:
            rows = rows.where(col(SpendRow.created_at) >= month_start)
        for client_key_id, created_at, charged in conn.execution_options(yield_per=20_000).execute(rows):
            for line in spend_lines(client_key_id, created_at):
                ledger[(line.scope, line.period)] += charged
        for lines, amount in conn.execute(select(col(BudgetReservationRow.lines), col(BudgetReservationRow.amount_nanos))):
            for part in lines.split(";"):
                scope, _, period = part.partition("|")
                holds[(scope, period)] += amount
        for scope, period, spent, reserved in conn.execute(select(
                col(BudgetCounterRow.scope), col(BudgetCounterRow.period), col(BudgetCounterRow.spent_nanos),
                col(BudgetCounterRow.reserved_nanos))):
            counters[(scope, period)] = (spent, reserved)
    keys = {k for k in (*ledger, *holds, *counters) if _in_range(k[1], first_day, first_month)}
    return [CounterDrift(scope, period, counters.get((scope, period), (0, 0))[0], ledger.get((scope, period), 0),
                         counters.get((scope, period), (0, 0))[1], holds.get((scope, period), 0))
            for scope, period in sorted(keys)]
