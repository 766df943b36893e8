"""The monitor's ``/metrics`` screen: the business figures, read with a handful of bounded aggregate queries
(SUM / COUNT with GROUP BY, LIMIT on every grouping by an open-ended column): no table is
ever loaded into memory, whatever its size."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, Float, case, cast, func, literal, select
from sqlalchemy.sql import ColumnElement

from domain import periods
from domain.adapters.sql.read_models.shared import key_scope_sql
from domain.adapters.sql.tables import BudgetCounterRow, ClientKeyRow, ConversationRow, SpendRow, table_of
from domain.periods import day_key, month_key

# Label values are bounded: the busiest models keep their name, the rest become "other".
MAX_MODELS = 50
MAX_CLIENTS = 50
OTHER = "other"
ACTIVE_CONVERSATION_WINDOW = timedelta(minutes=15)

spend = table_of(SpendRow)
keys = table_of(ClientKeyRow)
counters = table_of(BudgetCounterRow)
conversations = table_of(ConversationRow)


@dataclass(frozen=True, slots=True)
class SpendGroup:
    """All-time ledger totals for one (model, key_source, outcome)."""

    model: str
    key_source: str
    outcome: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanos: int
    unpriced: int


@dataclass(frozen=True, slots=True)
class Utilisation:
    client: str  # the key's short id
    window: str  # "day" | "month"
    ratio: float


@dataclass(frozen=True, slots=True)
class BusinessFigures:
    groups: list[SpendGroup] = field(default_factory=list)
    # key_source -> nano-USD in the current budget day / month (BUDGET_TIMEZONE)
    today_nanos: dict[str, int] = field(default_factory=dict)
    month_nanos: dict[str, int] = field(default_factory=dict)
    utilisation: list[Utilisation] = field(default_factory=list)
    active_conversations: int = 0


def read_business_figures(conn: Connection, now: datetime, tz: tzinfo = periods.KST) -> BusinessFigures:
    """Everything in one read-only pass. Days and months are those of the budget time zone,
    as the budget counters' periods are (``domain.periods``)."""
    today, month = _window_spend(conn, periods.day_start(now, tz), periods.month_start(now, tz))
    return BusinessFigures(
        groups=_spend_groups(conn),
        today_nanos=today,
        month_nanos=month,
        utilisation=_utilisation(conn, day_key(now, tz), "day", keys.c.daily_limit_nanos)
        + _utilisation(conn, month_key(now, tz), "month", keys.c.monthly_limit_nanos),
        active_conversations=_active_conversations(conn, now - ACTIVE_CONVERSATION_WINDOW),
    )


def _top_models(conn: Connection) -> list[str]:
    rows = conn.execute(select(spend.c.model).group_by(spend.c.model)
                        .order_by(func.count().desc(), spend.c.model).limit(MAX_MODELS))
    return [r[0] for r in rows]


def _spend_groups(conn: Connection) -> list[SpendGroup]:
    top = _top_models(conn)
    model = (case((spend.c.model.in_(top), spend.c.model), else_=literal(OTHER)) if top
             else literal(OTHER)).label("model")
    rows = conn.execute(
        select(model, spend.c.key_source, spend.c.outcome, func.count(),
               func.coalesce(func.sum(spend.c.input_tokens), 0),
               func.coalesce(func.sum(spend.c.cached_input_tokens), 0),
               func.coalesce(func.sum(spend.c.output_tokens), 0),
               func.coalesce(func.sum(spend.c.reasoning_tokens), 0),
               func.coalesce(func.sum(spend.c.cost_nanos), 0),
               func.coalesce(func.sum(case((spend.c.priced, 0), else_=1)), 0))
        .group_by(model, spend.c.key_source, spend.c.outcome))
    return [SpendGroup(str(m), str(ks), str(oc), *(int(v) for v in rest)) for m, ks, oc, *rest in rows]


def _window_spend(conn: Connection, day_start: datetime,
                  month_start: datetime) -> tuple[dict[str, int], dict[str, int]]:
    today: dict[str, int] = {}
    month: dict[str, int] = {}
    for source, day_nanos, month_nanos in conn.execute(
            select(spend.c.key_source,
                   func.coalesce(func.sum(case((spend.c.created_at >= day_start, spend.c.cost_nanos), else_=0)), 0),
                   func.coalesce(func.sum(spend.c.cost_nanos), 0))
            .where(spend.c.created_at >= month_start).group_by(spend.c.key_source).limit(MAX_MODELS)):
        today[str(source)], month[str(source)] = int(day_nanos), int(month_nanos)
    return today, month


def _utilisation(conn: Connection, period: str, window: str, limit_col: ColumnElement[Any]) -> list[Utilisation]:
    """Spent / cap of every live key with a cap in this period, the fullest first."""
    spent = func.coalesce(counters.c.spent_nanos, 0)
    ratio = (cast(spent, Float) / cast(limit_col, Float)).label("ratio")
    joined = keys.outerjoin(counters, (counters.c.scope == key_scope_sql(func.coalesce(keys.c.budget_key_id, keys.c.id))) & (counters.c.period == period))
    rows = conn.execute(
        select(keys.c.short_id, ratio).select_from(joined)
        .where(keys.c.revoked_at.is_(None), limit_col.is_not(None), limit_col > 0)
        .order_by(ratio.desc(), keys.c.short_id).limit(MAX_CLIENTS))
    return [Utilisation(str(short_id), window, float(r)) for short_id, r in rows]


def _active_conversations(conn: Connection, since: datetime) -> int:
    return int(conn.execute(select(func.count()).select_from(conversations)
                            .where(conversations.c.updated_at >= since)).scalar_one())
