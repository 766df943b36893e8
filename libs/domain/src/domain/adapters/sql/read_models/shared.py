"""What several screens' read models share: the table handles, the ledger filter and totals,
the local-day expression, key names by id, and the SQL twin of a key's budget scope."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, case, func, literal, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.tables import (
    AdminAuditRow,
    AlertRow,
    BudgetCounterRow,
    ClientKeyRow,
    ConversationRow,
    RequestLogRow,
    SpendRow,
    TurnRow,
    table_of,
)
from domain.client_keys import KEY_SCOPE_PREFIX
from domain.money import Money
from domain.periods import KST

SPEND = table_of(SpendRow)
TURNS = table_of(TurnRow)
CONVERSATIONS = table_of(ConversationRow)
KEYS = table_of(ClientKeyRow)
COUNTERS = table_of(BudgetCounterRow)
REQUESTS = table_of(RequestLogRow)
AUDIT = table_of(AdminAuditRow)
ALERTS = table_of(AlertRow)
spend_c = SPEND.c
turns_c = TURNS.c
convs_c = CONVERSATIONS.c
keys_c = KEYS.c
counters_c = COUNTERS.c
requests_c = REQUESTS.c


def utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted (SQLite compares text)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_int(value: Any) -> int:
    """An aggregate's value as an int (SQL gives NULL for a sum over no rows)."""
    return int(value or 0)


def key_scope_sql(key_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """A client key's budget counter scope computed in SQL, for joins: the twin of
    ``domain.client_keys.scope_of`` (``key:<id>``), built from the same prefix."""
    return literal(KEY_SCOPE_PREFIX) + key_id


def _zone_sql(tz: tzinfo) -> str:
    """The zone's IANA name, safe to put into SQL text (only a ZoneInfo's own key passes)."""
    name = tz.key if isinstance(tz, ZoneInfo) else "UTC"
    if not name or any(not (ch.isalnum() or ch in "/_+-") for ch in name):
        raise ValueError(f"unusable time zone name: {name!r}")
    return name


def local_day(engine: Engine, tz: tzinfo = KST, table: str = "spend_ledger") -> ColumnElement[Any]:
    """The local calendar day (budget time zone) of a row's ``created_at`` (a date, or
    'YYYY-MM-DD' text on SQLite), in ``spend_ledger`` or ``request_log``."""
    if engine.dialect.name == "postgresql":
        # literal SQL, no bound parameters: GROUP BY / GROUPING SETS must match it textually
        return literal_column(f"(({table}.created_at AT TIME ZONE '{_zone_sql(tz)}')::date)")
    # SQLite stores UTC wall-clock text 'YYYY-MM-DD HH:MM:SS...' and knows no zones: shift by
    # the zone's offset now (exact for zones without daylight saving, such as Korea's).
    offset = datetime.now(UTC).astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    column = spend_c.created_at if table == "spend_ledger" else requests_c.created_at
    if not minutes:
        return func.substr(column, 1, 10)
    return func.substr(func.datetime(func.substr(column, 1, 19), f"{minutes:+d} minutes"), 1, 10)


def key_names(conn: Any, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(short id, name) of each client key id given (one primary-key lookup)."""
    if not ids:
        return {}
    rows = conn.execute(select(keys_c.id, keys_c.short_id, keys_c.name).where(keys_c.id.in_(list(set(ids)))))
    return {r.id: (r.short_id, r.name) for r in rows}


# -- ledger filter and totals -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Filters on spend-ledger rows; every bound is optional. ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    client_key_id: str | None = None
    model: str | None = None
    key_source: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.since is not None:
            conds.append(spend_c.created_at >= utc(self.since))
        if self.until is not None:
            conds.append(spend_c.created_at < utc(self.until))
        if self.client_key_id is not None:
            conds.append(spend_c.client_key_id == self.client_key_id)
        if self.model is not None:
            conds.append(spend_c.model == self.model)
        if self.key_source is not None:
            conds.append(spend_c.key_source == self.key_source)
        return conds


@dataclass(frozen=True, slots=True)
class Totals:
    """``requests``/``errors`` count ledger rows here; the overview replaces them with the
    request log's client requests. ``user_cost_nanos`` is the part paid with callers' own
    keys; ``unpriced`` counts rows of unpriced models (their cost is unknown, not zero)."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    user_cost_nanos: int = 0
    unpriced: int = 0

    @property
    def cost(self) -> Money:
        return Money(self.cost_nanos)


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    label: str
    totals: Totals


def totals_columns() -> list[Any]:
    """The aggregates a ``Totals`` is read from (labelled as its fields)."""
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(case((spend_c.outcome == "error", 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(spend_c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(spend_c.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(spend_c.cost_nanos), 0).label("cost_nanos"),
        func.coalesce(func.sum(case((spend_c.key_source == "user", spend_c.cost_nanos), else_=0)), 0)
        .label("user_cost_nanos"),
        func.coalesce(func.sum(case((spend_c.cost_nanos.is_(None), 1), else_=0)), 0).label("unpriced"),
    ]


def totals_of(row: Any) -> Totals:
    """A row of ``totals_columns()`` as ``Totals``."""
    return Totals(as_int(row.requests), as_int(row.errors), as_int(row.input_tokens), as_int(row.output_tokens),
                  as_int(row.cost_nanos), as_int(row.user_cost_nanos), as_int(row.unpriced))
