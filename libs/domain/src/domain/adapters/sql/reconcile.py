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
from datetime import datetime, tzinfo

from sqlalchemy import Engine, select
from sqlmodel import col

from domain.adapters.sql.tables import BudgetCounterRow, BudgetReservationRow, ClientKeyRow, SpendRow
from domain.budgets import spend_lines
from domain.periods import DAY_PREFIX, KST, MONTH_PREFIX, day_key, is_day_key, month_key
from domain.periods import month_start as local_month_start


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


def _first_periods(since: datetime | None, tz: tzinfo) -> tuple[str, str]:
    if since is None:
        return DAY_PREFIX, MONTH_PREFIX
    return day_key(since, tz), month_key(since, tz)


def _in_range(period: str, first_day: str, first_month: str) -> bool:
    return period >= first_day if is_day_key(period) else period >= first_month


def reconcile(engine: Engine, since: datetime | None = None, tz: tzinfo = KST) -> list[CounterDrift]:
    """Every counter of the periods from ``since``'s day and month on (all when None), with
    its ledger and hold sums. Rows are read from the start of ``since``'s month, so a
    monthly counter is compared whole. Days and months are those of ``tz``, the budget time
    zone the counters were kept in."""
    first_day, first_month = _first_periods(since, tz)
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    holds: dict[tuple[str, str], int] = defaultdict(int)
    counters: dict[tuple[str, str], tuple[int, int]] = {}
    month_start = None if since is None else local_month_start(since, tz)
    with engine.connect() as conn:
        # a rotated key's rows count on its chain's budget (ClientKey.budget_owner)
        budget_of: dict[str | None, str] = dict(conn.execute(  # type: ignore[arg-type]
            select(col(ClientKeyRow.id), col(ClientKeyRow.budget_key_id))
            .where(col(ClientKeyRow.budget_key_id).is_not(None))).all())
        rows = select(col(SpendRow.client_key_id), col(SpendRow.created_at), col(SpendRow.charged_nanos))
        if month_start is not None:
            rows = rows.where(col(SpendRow.created_at) >= month_start)
        for client_key_id, created_at, charged in conn.execution_options(yield_per=20_000).execute(rows):
            for line in spend_lines(budget_of.get(client_key_id, client_key_id), created_at, tz):
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
