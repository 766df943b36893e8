"""Read models for the operator console (the admin API's GET routes).

Plain synchronous functions over an ``Engine``: the caller runs them in its database thread
pool. Every query is bounded by an index (a time range, a key, a conversation) and returns
aggregates or one page, never a whole table. Money stays integer nano-USD here; the entrypoint
formats it.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Engine,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from domain import periods
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
from domain.budgets import day_period, month_period
from domain.client_keys import scope_of
from domain.money import Money
from domain.periods import KST

GroupBy = Literal["day", "model", "key_source", "client_key"]

_spend = table_of(SpendRow).c
_turns = table_of(TurnRow).c
_convs = table_of(ConversationRow).c
_keys = table_of(ClientKeyRow).c
_counters = table_of(BudgetCounterRow).c
SPEND = table_of(SpendRow)
TURNS = table_of(TurnRow)
CONVERSATIONS = table_of(ConversationRow)
KEYS = table_of(ClientKeyRow)
COUNTERS = table_of(BudgetCounterRow)
REQUESTS = table_of(RequestLogRow)
AUDIT = table_of(AdminAuditRow)
ALERTS = table_of(AlertRow)
_requests = REQUESTS.c


def utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted (SQLite compares text)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day_start(now: datetime, tz: tzinfo = KST) -> datetime:
    """Budget periods are local days and months of the budget time zone (``domain.periods``):
    so are "today" and "this month" here."""
    return periods.day_start(now, tz)


def month_start(now: datetime, tz: tzinfo = KST) -> datetime:
    return periods.month_start(now, tz)


def _zone_sql(tz: tzinfo) -> str:
    """The zone's IANA name, safe to put into SQL text (only a ZoneInfo's own key passes)."""
    name = tz.key if isinstance(tz, ZoneInfo) else "UTC"
    if not name or any(not (ch.isalnum() or ch in "/_+-") for ch in name):
        raise ValueError(f"unusable time zone name: {name!r}")
    return name


# -- shared shapes ----------------------------------------------------------------------------

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
            conds.append(_spend.created_at >= utc(self.since))
        if self.until is not None:
            conds.append(_spend.created_at < utc(self.until))
        if self.client_key_id is not None:
            conds.append(_spend.client_key_id == self.client_key_id)
        if self.model is not None:
            conds.append(_spend.model == self.model)
        if self.key_source is not None:
            conds.append(_spend.key_source == self.key_source)
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


@dataclass(frozen=True, slots=True)
class ClientGroupRow:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    totals: Totals


@dataclass(frozen=True, slots=True)
class Overview:
    today: Totals
    month: Totals
    top_models: list[GroupRow]
    top_clients: list[ClientGroupRow]
    by_day: list[GroupRow]


def _int(value: Any) -> int:
    return int(value or 0)


def _totals_columns() -> list[Any]:
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(case((_spend.outcome == "error", 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(_spend.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(_spend.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(_spend.cost_nanos), 0).label("cost_nanos"),
        func.coalesce(func.sum(case((_spend.key_source == "user", _spend.cost_nanos), else_=0)), 0)
        .label("user_cost_nanos"),
        func.coalesce(func.sum(case((_spend.cost_nanos.is_(None), 1), else_=0)), 0).label("unpriced"),
    ]


def _totals(row: Any) -> Totals:
    return Totals(_int(row.requests), _int(row.errors), _int(row.input_tokens), _int(row.output_tokens),
                  _int(row.cost_nanos), _int(row.user_cost_nanos), _int(row.unpriced))


def _day_expr(engine: Engine, tz: tzinfo = KST, table: str = "spend_ledger") -> ColumnElement[Any]:
    """The local calendar day (budget time zone) of a row's ``created_at`` (a date, or
    'YYYY-MM-DD' text on SQLite)."""
    if engine.dialect.name == "postgresql":
        # literal SQL, no bound parameters: GROUP BY / GROUPING SETS must match it textually
        return literal_column(f"(({table}.created_at AT TIME ZONE '{_zone_sql(tz)}')::date)")
    # SQLite stores UTC wall-clock text 'YYYY-MM-DD HH:MM:SS...' and knows no zones: shift by
    # the zone's offset now (exact for zones without daylight saving, such as Korea's).
    offset = datetime.now(UTC).astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    column = _spend.created_at if table == "spend_ledger" else _requests.created_at
    if not minutes:
        return func.substr(column, 1, 10)
    return func.substr(func.datetime(func.substr(column, 1, 19), f"{minutes:+d} minutes"), 1, 10)


# -- overview -------------------------------------------------------------------------------------

def overview(engine: Engine, now: datetime, *, top: int = 5, days: int = 30, tz: tzinfo = KST) -> Overview:
    """Today and this month (local days of the budget time zone, like budget periods), the
    month's top models and clients, and spend per day over the last ``days`` days: one range
    scan on ``ix_spend_created_at``.

    ``requests`` and ``errors`` of today, the month and each day are client requests from the
    request log (a fallback is one request, a refusal is an error), one more range scan on
    ``ix_request_log_created_at``; tokens and money come from the ledger.

    PostgreSQL aggregates every panel in that one pass with GROUPING SETS; SQLite (small,
    embedded installs) groups by (day, model, client) and the panels are folded here."""
    month0 = month_start(now, tz)
    today_s, month_s = periods.local_date(now, tz), periods.local_date(month0, tz)
    first_day = (datetime.fromisoformat(today_s) - timedelta(days=days - 1)).date()
    window0 = day_start(datetime.combine(first_day, datetime.min.time(), tzinfo=tz), tz)
    window_s = first_day.isoformat()
    today, month = _Acc(), _Acc()
    per_day: dict[str, _Acc] = {}
    per_model: dict[str, _Acc] = {}
    per_client: dict[str | None, _Acc] = {}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            _overview_grouping_sets(conn, engine, tz, min(month0, window0), month0, month, per_day, per_model,
                                    per_client)
        else:
            day = _day_expr(engine, tz).label("day")
            rows = conn.execute(
                select(day, _spend.model, _spend.client_key_id, *_totals_columns())
                .where(_spend.created_at >= min(month0, window0))
                .group_by(day, _spend.model, _spend.client_key_id)).all()
            for r in rows:
                d = str(r.day)[:10]
                per_day.setdefault(d, _Acc()).add(r)
                if d >= month_s:
                    month.add(r)
                    per_model.setdefault(r.model, _Acc()).add(r)
                    per_client.setdefault(r.client_key_id, _Acc()).add(r)
        if today_s in per_day:
            today = per_day[today_s]
        counts = _request_counts_by_day(conn, engine, tz, min(month0, window0))

        def ranked(groups: dict[Any, _Acc]) -> list[tuple[Any, Totals]]:
            items = sorted(groups.items(), key=lambda kv: (-kv[1].cost_nanos, -kv[1].requests, str(kv[0])))
            return [(k, acc.totals()) for k, acc in items[:top]]

        models = ranked(per_model)
        clients = ranked(per_client)
        names = _key_names(conn, [k for k, _ in clients if k])

    def with_counts(t: Totals, requests: int, errors: int) -> Totals:
        return Totals(requests, errors, t.input_tokens, t.output_tokens, t.cost_nanos, t.user_cost_nanos, t.unpriced)

    month_counts = [v for d, v in counts.items() if d >= month_s]
    by_day = []
    for i in range(days):
        d = (first_day + timedelta(days=i)).isoformat()
        totals = per_day[d].totals() if d in per_day and d >= window_s else Totals()
        by_day.append(GroupRow(d, d, with_counts(totals, *counts.get(d, (0, 0)))))
    return Overview(
        today=with_counts(today.totals(), *counts.get(today_s, (0, 0))),
        month=with_counts(month.totals(), sum(r for r, _ in month_counts), sum(e for _, e in month_counts)),
        top_models=[GroupRow(k, k, t) for k, t in models],
        top_clients=[_client_group(k, names.get(k), t) for k, t in clients],
        by_day=by_day)


def _request_counts_by_day(conn: Any, engine: Engine, tz: tzinfo, start: datetime) -> dict[str, tuple[int, int]]:
    """Client requests and errors (status >= 400) per local day since ``start``."""
    day = _day_expr(engine, tz, table="request_log").label("day")
    rows = conn.execute(select(day, func.count().label("n"),
                               func.coalesce(func.sum(case((_requests.status >= 400, 1), else_=0)), 0).label("e"))
                        .where(_requests.created_at >= start).group_by(day)).all()
    return {str(r.day)[:10]: (_int(r.n), _int(r.e)) for r in rows}


def _overview_grouping_sets(conn: Any, engine: Engine, tz: tzinfo, start: datetime, month0: datetime, month: _Acc,
                            per_day: dict[str, _Acc], per_model: dict[str, _Acc],
                            per_client: dict[str | None, _Acc]) -> None:
    day = _day_expr(engine, tz)
    in_month = _spend.created_at >= month0
    # Every set reads the same scan: days over the whole window; models, clients and the
    # month's total only over this month (the window can start in the previous month).
    cols = [
        func.count().filter(in_month).label("m_requests"),
        func.count().filter(and_(in_month, _spend.outcome == "error")).label("m_errors"),
        func.sum(_spend.input_tokens).filter(in_month).label("m_input_tokens"),
        func.sum(_spend.output_tokens).filter(in_month).label("m_output_tokens"),
        func.sum(_spend.cost_nanos).filter(in_month).label("m_cost_nanos"),
        func.count().filter(and_(in_month, _spend.cost_nanos.is_(None))).label("m_unpriced"),
        *_totals_columns(),
        func.grouping(day).label("g_day"), func.grouping(_spend.model).label("g_model"),
        func.grouping(_spend.client_key_id).label("g_client"),
    ]
    rows = conn.execute(
        select(day.label("day"), _spend.model, _spend.client_key_id, *cols).where(_spend.created_at >= start)
        .group_by(func.grouping_sets(tuple_(day), tuple_(_spend.model), tuple_(_spend.client_key_id), tuple_()))
    ).all()
    for r in rows:
        # the month's user-paid share is summed from its days below (one aggregate fewer here)
        m = _Acc(_int(r.m_requests), _int(r.m_errors), _int(r.m_input_tokens), _int(r.m_output_tokens),
                 _int(r.m_cost_nanos), 0, _int(r.m_unpriced))
        if not r.g_day:
            per_day[str(r.day)[:10]] = _Acc(_int(r.requests), _int(r.errors), _int(r.input_tokens),
                                             _int(r.output_tokens), _int(r.cost_nanos), _int(r.user_cost_nanos),
                                             _int(r.unpriced))
        elif not r.g_model:
            if m.requests:
                per_model[r.model] = m
        elif not r.g_client:
            if m.requests:
                per_client[r.client_key_id] = m
        else:
            month.add(m)
    month0_s = periods.local_date(month0, tz)
    month.user_cost_nanos = sum(acc.user_cost_nanos for d, acc in per_day.items() if d >= month0_s)


@dataclass(slots=True)
class _Acc:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    user_cost_nanos: int = 0
    unpriced: int = 0

    def add(self, row: Any) -> None:  # a query row or another _Acc
        self.requests += _int(row.requests)
        self.errors += _int(row.errors)
        self.input_tokens += _int(row.input_tokens)
        self.output_tokens += _int(row.output_tokens)
        self.cost_nanos += _int(row.cost_nanos)
        self.user_cost_nanos += _int(row.user_cost_nanos)
        self.unpriced += _int(row.unpriced)

    def totals(self) -> Totals:
        return Totals(self.requests, self.errors, self.input_tokens, self.output_tokens, self.cost_nanos,
                      self.user_cost_nanos, self.unpriced)


def _client_group(key_id: str | None, named: tuple[str, str] | None, totals: Totals) -> ClientGroupRow:
    short_id, name = named if named else (None, None)
    return ClientGroupRow(key_id, short_id, name, totals)


def _key_names(conn: Any, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    if not ids:
        return {}
    rows = conn.execute(select(_keys.id, _keys.short_id, _keys.name).where(_keys.id.in_(list(set(ids)))))
    return {r.id: (r.short_id, r.name) for r in rows}


# -- spend ----------------------------------------------------------------------------------------

def spend(engine: Engine, group_by: GroupBy, flt: LedgerFilter, *, limit: int = 1000,
          tz: tzinfo = KST) -> tuple[list[GroupRow], Totals]:
    """Ledger totals grouped by day (local, budget time zone), model, key source or client key, plus the grand
    total under the same filters. Callers should bound ``since`` (the console does) so the
    scan stays on ``ix_spend_created_at`` / ``ix_spend_*_created``."""
    conds = flt.conditions()
    with engine.connect() as conn:
        total = _totals(conn.execute(select(*_totals_columns()).where(*conds)).one())
        if group_by == "day":
            key = _day_expr(engine, tz).label("key")
            order: list[Any] = [key]
        else:
            column = {"model": _spend.model, "key_source": _spend.key_source,
                      "client_key": _spend.client_key_id}[group_by]
            key = column.label("key")
            order = [func.coalesce(func.sum(_spend.cost_nanos), 0).desc(), func.count().desc(), key]
        rows = conn.execute(select(key, *_totals_columns()).where(*conds).group_by(key).order_by(*order)
                            .limit(limit)).all()
        names = _key_names(conn, [r.key for r in rows if r.key]) if group_by == "client_key" else {}
    out = []
    for r in rows:
        k = "" if r.key is None else str(r.key)
        if group_by == "client_key":
            short, name = names.get(k, ("", ""))
            label = f"{name} ({short})" if short else ("anonymous" if not k else k[:8])
        else:
            label = k
        out.append(GroupRow(k, label, _totals(r)))
    return out, total


LEDGER_CSV_COLUMNS = (
    "created_at_local", "created_at", "request_id", "client_key_id", "client_key_name", "conversation_id", "route",
    "model", "key_source", "fallback_reason", "outcome", "error_code", "input_tokens", "cached_input_tokens",
    "output_tokens", "reasoning_tokens", "cost_usd", "cost_krw", "charged_usd", "priced", "estimated",
    "catalog_version", "latency_ms",
)
REQUESTS_CSV_COLUMNS = (
    "created_at_local", "created_at", "request_id", "route", "status", "error_code", "client_key_id",
    "client_key_name", "model", "key_source", "fallback_reason", "upstream", "latency_ms", "cost_usd", "cost_krw",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet will not run: request ids, model names and key names come
    from callers and operators, and a leading '=', '+', '-', '@', tab or CR would make
    Excel or LibreOffice evaluate it as a formula (=HYPERLINK(...)). Numbers pass as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _krw_formatter(rate: Decimal) -> Callable[[int], str]:
    """Nano-USD to KRW text at ``rate``, 2 decimals, half up, as ``Money.krw`` — in integer
    arithmetic, since an export formats one per row."""
    p, q = rate.as_integer_ratio()
    den = q * 10**9

    def krw(nanos: int) -> str:
        sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
        cents = (2 * n * p * 100 + den) // (2 * den)
        return f"{sign}{cents // 100}.{cents % 100:02d}"

    return krw


def _keyset_chunks(engine: Engine, table: Any, cols: list[Any], conds: list[ColumnElement[bool]], limit: int,
                   chunk_rows: int, row_out: Callable[[Any, dict[str, tuple[str, str]]], list[Any]],
                   header: Sequence[str], key_column: str) -> Iterator[str]:
    """CSV text chunks of ``table`` rows, newest first, at most ``limit`` rows: keyset
    pagination on (created_at, id) descending, so each chunk is its own short query (no
    connection or cursor held between chunks) and memory stays at one chunk."""
    c = table.c
    buf = io.StringIO()
    # CRLF rows (what Excel writes), and a field holding a bare CR or LF is quoted.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    yield _drain(buf)
    sent, after = 0, None
    while sent < limit:
        q = select(c.id, c.created_at, *cols).where(*conds)
        if after is not None:
            q = q.where(or_(c.created_at < after[0], and_(c.created_at == after[0], c.id < after[1])))
        q = q.order_by(c.created_at.desc(), c.id.desc()).limit(min(chunk_rows, limit - sent))
        with engine.connect() as conn:
            rows = conn.execute(q).all()
            names = _key_names(conn, [getattr(r, key_column) for r in rows if getattr(r, key_column)])
        if not rows:
            return
        for r in rows:
            writer.writerow(row_out(r, names))
        sent += len(rows)
        after = (rows[-1].created_at, rows[-1].id)
        yield _drain(buf)
        if len(rows) < chunk_rows:
            return


def _local_text(value: datetime, tz: tzinfo) -> str:
    return utc(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _row_writer(plain: Sequence[str], text: frozenset[str], key_at: int, tz: tzinfo, krw_rate: Decimal,
                with_charged: bool, tail: Sequence[str]) -> Callable[[Any, dict[str, tuple[str, str]]], list[Any]]:
    """Formats one selected row (id, created_at, *plain, cost_nanos, [charged_nanos], *tail)
    by position: exports run this per row, so no per-row lookups by name."""
    krw = _krw_formatter(krw_rate)
    is_text = [c in text for c in plain]
    tail_text = [c in text for c in tail]
    n_plain = len(plain)

    def row_out(r: Any, names: dict[str, tuple[str, str]]) -> list[Any]:
        created = r[1]
        out: list[Any] = [_local_text(created, tz), utc(created).isoformat()]
        for i in range(n_plain):
            v = r[2 + i]
            out.append("" if v is None else (csv_cell(v) if is_text[i] else v))
            if i == key_at:
                out.append(csv_cell(names[v][1]) if v in names else "")
        cost = r[2 + n_plain]
        out += ["", ""] if cost is None else [usd_8(cost), krw(cost)]
        at = 3 + n_plain
        if with_charged:
            out.append(usd_8(r[at]))
            at += 1
        for j, flag in enumerate(tail_text):
            v = r[at + j]
            out.append("" if v is None else (csv_cell(v) if flag else v))
        return out

    return row_out


_TEXT_COLUMNS = frozenset({"request_id", "client_key_id", "route", "model", "key_source", "fallback_reason",
                           "outcome", "error_code", "catalog_version", "upstream"})


def ledger_csv(engine: Engine, flt: LedgerFilter, *, limit: int = 100_000, chunk_rows: int = 5_000,
               tz: tzinfo = KST, krw_rate: Decimal = Decimal(1400)) -> Iterator[str]:
    """The ledger rows under ``flt`` as CSV text chunks, newest first, at most ``limit``
    rows; times in UTC and in the budget time zone, key names beside ids, USD and KRW as plain
    numbers, caller-supplied text neutralised (``csv_cell``)."""
    plain = ("request_id", "client_key_id", "conversation_id", "route", "model", "key_source", "fallback_reason",
             "outcome", "error_code", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    tail = ("priced", "estimated", "catalog_version", "latency_ms")
    cols = [*(_spend[c] for c in plain), _spend.cost_nanos, _spend.charged_nanos, *(_spend[c] for c in tail)]
    row_out = _row_writer(plain, _TEXT_COLUMNS, plain.index("client_key_id"), tz, krw_rate, True, tail)
    return _keyset_chunks(engine, SPEND, cols, flt.conditions(), limit, chunk_rows, row_out, LEDGER_CSV_COLUMNS,
                          "client_key_id")


def requests_csv(engine: Engine, flt: RequestFilter, *, limit: int = 100_000, chunk_rows: int = 5_000,
                 tz: tzinfo = KST, krw_rate: Decimal = Decimal(1400)) -> Iterator[str]:
    """The request log under ``flt`` as CSV, newest first, like ``ledger_csv``."""
    plain = ("request_id", "route", "status", "error_code", "client_key_id", "model", "key_source",
             "fallback_reason", "upstream", "latency_ms")
    cols = [*(_requests[c] for c in plain), _requests.cost_nanos]
    row_out = _row_writer(plain, _TEXT_COLUMNS, plain.index("client_key_id"), tz, krw_rate, False, ())
    return _keyset_chunks(engine, REQUESTS, cols, flt.conditions(), limit, chunk_rows, row_out,
                          REQUESTS_CSV_COLUMNS, "client_key_id")


def usd_8(nanos: int) -> str:
    """Nano-USD as USD to 8 decimals, rounded half up (as ``Money.usd_rounded(8)``), fast."""
    sign, n = ("-", -nanos) if nanos < 0 else ("", nanos)
    tenths = (n + 5) // 10
    return f"{sign}{tenths // 100_000_000}.{tenths % 100_000_000:08d}"


def _drain(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text


# -- conversations -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """``since``/``until`` bound the conversation's last activity (``updated_at``); ``q``
    matches a turn's prompt or reply case-insensitively (a turn inside the range, if one is
    given)."""

    since: datetime | None = None
    until: datetime | None = None
    client_key_id: str | None = None
    model: str | None = None
    key_source: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationItem:
    id: int
    external_id: str
    owner: str
    owner_short_id: str | None
    owner_name: str | None
    turn_count: int
    created_at: datetime
    updated_at: datetime
    last_model: str | None
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class ConversationPage:
    items: list[ConversationItem]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class TurnView:
    turn_index: int
    created_at: datetime
    request_id: str
    system_prompt: str
    prompt: str
    reply: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None
    latency_ms: int | None
    key_source: str | None
    estimated: bool
    outcome: str | None = None
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    conversation: ConversationItem
    turns: list[TurnView] = field(default_factory=list)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conversation_conditions(flt: ConversationFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if flt.since is not None:
        conds.append(_convs.updated_at >= utc(flt.since))
    if flt.until is not None:
        conds.append(_convs.updated_at < utc(flt.until))
    if flt.client_key_id is not None:
        conds.append(_convs.owner == flt.client_key_id)
    # The EXISTS probes below are per-conversation lookups on uq_turns_conversation_turn_index
    # and ix_spend_conversation, so they cost one index probe per candidate conversation.
    if flt.model is not None:
        conds.append(exists().where(_turns.conversation_id == _convs.id, _turns.model == flt.model))
    if flt.key_source is not None:
        conds.append(exists().where(_spend.conversation_id == _convs.id, _spend.key_source == flt.key_source))
    if flt.q:
        pattern = _like_pattern(flt.q.strip())
        match = [_turns.conversation_id == _convs.id,
                 or_(_turns.prompt.ilike(pattern, escape="\\"), _turns.reply.ilike(pattern, escape="\\"))]
        # With a time range, the text must be in a turn of that range: the search then reads
        # only that range's turns (ix_turns_created_at) instead of every turn ever stored.
        if flt.since is not None:
            match.append(_turns.created_at >= utc(flt.since))
        if flt.until is not None:
            match.append(_turns.created_at < utc(flt.until))
        conds.append(exists().where(*match))
    return conds


def _conversation_select() -> Any:
    last = TURNS.alias("last_turn")
    return (select(_convs.id, _convs.external_id, _convs.owner, _convs.turn_count, _convs.created_at,
                   _convs.updated_at, _keys.short_id, _keys.name, last.c.model.label("last_model"))
            .select_from(CONVERSATIONS.outerjoin(KEYS, _keys.id == _convs.owner)
                         # the newest turn's index equals turn_count: one unique-index probe
                         .outerjoin(last, and_(last.c.conversation_id == _convs.id,
                                               last.c.turn_index == _convs.turn_count))))


def _conversation_items(conn: Any, rows: Sequence[Any]) -> list[ConversationItem]:
    ids = [r.id for r in rows]
    costs: dict[int, int] = {}
    if ids:
        costs = {r.conversation_id: _int(r.cost) for r in conn.execute(
            select(_spend.conversation_id, func.sum(_spend.cost_nanos).label("cost"))
            .where(_spend.conversation_id.in_(ids)).group_by(_spend.conversation_id))}
    return [ConversationItem(id=r.id, external_id=r.external_id, owner=r.owner, owner_short_id=r.short_id,
                             owner_name=r.name, turn_count=r.turn_count, created_at=utc(r.created_at),
                             updated_at=utc(r.updated_at), last_model=r.last_model, cost_nanos=costs.get(r.id, 0))
            for r in rows]


def conversations(engine: Engine, flt: ConversationFilter, *, page: int = 1, page_size: int = 20) -> ConversationPage:
    """One page of conversations, most recently active first, and how many match in all."""
    page, page_size = max(1, page), max(1, page_size)
    conds = _conversation_conditions(flt)
    with engine.connect() as conn:
        total = _int(conn.execute(select(func.count()).select_from(CONVERSATIONS).where(*conds)).scalar())
        rows = conn.execute(_conversation_select().where(*conds)
                            .order_by(_convs.updated_at.desc(), _convs.id.desc())
                            .limit(page_size).offset((page - 1) * page_size)).all()
        items = _conversation_items(conn, rows)
    return ConversationPage(items, total, page, page_size)


def conversation_turns(engine: Engine, conversation_id: int) -> ConversationDetail | None:
    """A conversation and its turns in order, each with its ledger row (joined by request id,
    unique in the ledger): tokens, cost, latency, key source."""
    with engine.connect() as conn:
        row = conn.execute(_conversation_select().where(_convs.id == conversation_id)).one_or_none()
        if row is None:
            return None
        item = _conversation_items(conn, [row])[0]
        rows = conn.execute(
            select(_turns.turn_index, _turns.created_at, _turns.request_id, _turns.system_prompt, _turns.prompt,
                   _turns.reply, _turns.model, _spend.input_tokens, _spend.cached_input_tokens,
                   _spend.output_tokens, _spend.reasoning_tokens, _spend.cost_nanos, _spend.latency_ms,
                   _spend.key_source, _spend.estimated, _spend.outcome, _spend.fallback_reason)
            .select_from(TURNS.outerjoin(SPEND, _spend.request_id == _turns.request_id))
            .where(_turns.conversation_id == conversation_id).order_by(_turns.turn_index)).all()
    turns = [TurnView(turn_index=r.turn_index, created_at=utc(r.created_at), request_id=r.request_id,
                      system_prompt=r.system_prompt, prompt=r.prompt, reply=r.reply, model=r.model,
                      input_tokens=_int(r.input_tokens), cached_input_tokens=_int(r.cached_input_tokens),
                      output_tokens=_int(r.output_tokens), reasoning_tokens=_int(r.reasoning_tokens),
                      cost_nanos=r.cost_nanos, latency_ms=r.latency_ms, key_source=r.key_source,
                      estimated=bool(r.estimated), outcome=r.outcome, fallback_reason=r.fallback_reason)
             for r in rows]
    return ConversationDetail(item, turns)


# -- client keys --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KeyView:
    id: str
    short_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    daily_limit_nanos: int | None
    monthly_limit_nanos: int | None
    may_use_server_key: bool
    pii_policy: str | None  # None: the server's PII_POLICY
    spent_today_nanos: int
    spent_month_nanos: int
    held_today_nanos: int = 0
    held_month_nanos: int = 0
    refused_today: int = 0


def keys(engine: Engine, now: datetime, *, key_id: str | None = None, tz: tzinfo = KST) -> list[KeyView]:
    """Client keys (never their hashes) with what each spent and holds (open reservations)
    today and this month, read from the budget counters by primary key (scope 'key:<id>',
    periods 'd:…' and 'm:…' of the budget time zone), and how many of today's requests were
    refused for budget (402, from the request log)."""
    now = utc(now)
    day, month = day_period(now, tz), month_period(now, tz)
    q = select(_keys.id, _keys.short_id, _keys.name, _keys.created_at, _keys.revoked_at, _keys.daily_limit_nanos,
               _keys.monthly_limit_nanos, _keys.may_use_server_key, _keys.pii_policy)
    q = q.where(_keys.id == key_id) if key_id is not None else q.order_by(_keys.created_at, _keys.id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        scopes = [scope_of(r.id) for r in rows]
        spent: dict[tuple[str, str], tuple[int, int]] = {}
        for start in range(0, len(scopes), 500):
            part = scopes[start:start + 500]
            pairs = [(s, p) for s in part for p in (day, month)]
            spent.update({(r.scope, r.period): (_int(r.spent_nanos), _int(r.reserved_nanos)) for r in conn.execute(
                select(_counters.scope, _counters.period, _counters.spent_nanos, _counters.reserved_nanos)
                .where(tuple_(_counters.scope, _counters.period).in_(pairs)))})
        refused_q = (select(_requests.client_key_id, func.count().label("n"))
                     .where(_requests.status == 402, _requests.created_at >= day_start(now, tz)))
        if key_id is not None:
            refused_q = refused_q.where(_requests.client_key_id == key_id)
        refused = {r.client_key_id: _int(r.n) for r in conn.execute(refused_q.group_by(_requests.client_key_id))}
    out = []
    for r in rows:
        d_spent, d_held = spent.get((scope_of(r.id), day), (0, 0))
        m_spent, m_held = spent.get((scope_of(r.id), month), (0, 0))
        out.append(KeyView(id=r.id, short_id=r.short_id, name=r.name, created_at=utc(r.created_at),
                           revoked_at=utc(r.revoked_at) if r.revoked_at else None,
                           daily_limit_nanos=r.daily_limit_nanos, monthly_limit_nanos=r.monthly_limit_nanos,
                           may_use_server_key=bool(r.may_use_server_key), pii_policy=r.pii_policy,
                           spent_today_nanos=d_spent,
                           spent_month_nanos=m_spent, held_today_nanos=d_held, held_month_nanos=m_held,
                           refused_today=refused.get(r.id, 0)))
    return out


def key(engine: Engine, now: datetime, key_id: str, tz: tzinfo = KST) -> KeyView | None:
    found = keys(engine, now, key_id=key_id, tz=tz)
    return found[0] if found else None


# -- request log --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RequestFilter:
    """``status``: one HTTP status (402), a class ("4xx", "5xx") or "error" (>= 400).
    ``until`` is exclusive."""

    status: str | None = None
    client_key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        st = (self.status or "").strip().lower()
        if st == "error":
            conds.append(_requests.status >= 400)
        elif len(st) == 3 and st.endswith("xx") and st[0] in "12345":
            base = int(st[0]) * 100
            conds.extend([_requests.status >= base, _requests.status < base + 100])
        elif st:
            conds.append(_requests.status == int(st))
        if self.client_key_id is not None:
            conds.append(_requests.client_key_id == self.client_key_id)
        if self.since is not None:
            conds.append(_requests.created_at >= utc(self.since))
        if self.until is not None:
            conds.append(_requests.created_at < utc(self.until))
        return conds


def valid_status_filter(value: str) -> bool:
    st = value.strip().lower()
    return (st == "error" or (len(st) == 3 and st.endswith("xx") and st[0] in "12345")
            or (st.isdigit() and len(st) == 3 and 100 <= int(st) <= 599))


@dataclass(frozen=True, slots=True)
class RequestItem:
    request_id: str
    created_at: datetime
    route: str
    status: int
    error_code: str | None
    client_key_id: str | None
    model: str | None
    key_source: str | None
    fallback_reason: str | None
    upstream: str | None
    latency_ms: int
    cost_nanos: int | None
    client_name: str | None = None
    client_short_id: str | None = None
    pii_counts: dict[str, int] = field(default_factory=dict)  # per kind, never a value


@dataclass(frozen=True, slots=True)
class RequestPage:
    items: list[RequestItem]
    total: int
    page: int
    page_size: int


def requests(engine: Engine, flt: RequestFilter, *, page: int = 1, page_size: int = 50,
             request_id: str | None = None) -> RequestPage:
    """One page of the request log, newest first, and how many entries match in all."""
    page, page_size = max(1, page), max(1, page_size)
    conds = flt.conditions()
    if request_id is not None:
        conds.append(_requests.request_id == request_id)
    with engine.connect() as conn:
        total = _int(conn.execute(select(func.count()).select_from(REQUESTS).where(*conds)).scalar())
        rows = conn.execute(
            select(_requests.request_id, _requests.created_at, _requests.route, _requests.status,
                   _requests.error_code, _requests.client_key_id, _requests.model, _requests.key_source,
                   _requests.fallback_reason, _requests.upstream, _requests.latency_ms, _requests.cost_nanos,
                   _requests.pii_counts)
            .where(*conds).order_by(_requests.created_at.desc(), _requests.id.desc())
            .limit(page_size).offset((page - 1) * page_size)).all()
        names = _key_names(conn, [r.client_key_id for r in rows if r.client_key_id])
    items = []
    for r in rows:
        short_id, name = names.get(r.client_key_id or "", (None, None))
        items.append(RequestItem(r.request_id, utc(r.created_at), r.route, int(r.status), r.error_code,
                                 r.client_key_id, r.model, r.key_source, r.fallback_reason, r.upstream,
                                 _int(r.latency_ms), r.cost_nanos, name, short_id, _counts(r.pii_counts)))
    return RequestPage(items, total, page, page_size)


def _counts(text: str | None) -> dict[str, int]:
    """A ``pii_counts`` column (JSON text, NULL: none) as a dict; anything unreadable as none."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(n) for k, n in sorted(value.items()) if isinstance(n, int) and not isinstance(n, bool)}


def request_window(engine: Engine, since: datetime) -> tuple[int, int]:
    """(requests, errors) since a moment: the "now" error rate (status >= 400)."""
    with engine.connect() as conn:
        row = conn.execute(select(func.count().label("n"),
                                  func.coalesce(func.sum(case((_requests.status >= 400, 1), else_=0)), 0).label("e"))
                           .where(_requests.created_at >= utc(since))).one()
    return _int(row.n), _int(row.e)


def recent_requests(engine: Engine, since: datetime, *, max_samples: int = 20_000) -> dict[str, Any]:
    """The "now" view: requests since a moment by status class, errors, and latency
    percentiles (p50/p95 over up to ``max_samples`` of the newest entries)."""
    cls = (_requests.status // 100).label("cls")
    with engine.connect() as conn:
        by_class = {f"{int(r.cls)}xx": _int(r.n) for r in conn.execute(
            select(cls, func.count().label("n")).where(_requests.created_at >= utc(since)).group_by(cls))}
        latencies = sorted(_int(v) for v in conn.execute(
            select(_requests.latency_ms).where(_requests.created_at >= utc(since))
            .order_by(_requests.created_at.desc()).limit(max_samples)).scalars())

    def pct(p: float) -> int | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    total = sum(by_class.values())
    errors = sum(n for c, n in by_class.items() if c[0] in "45")
    return {"since": utc(since).isoformat().replace("+00:00", "Z"), "requests": total, "errors": errors,
            "by_class": by_class, "p50_ms": pct(0.5), "p95_ms": pct(0.95)}


def conversation_of_request(engine: Engine, request_id: str) -> int | None:
    """The conversation a request's turn was stored in, when it has one."""
    with engine.connect() as conn:
        return conn.execute(select(_spend.conversation_id).where(_spend.request_id == request_id)).scalar()


# -- audit log and alerts ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditItem:
    at: datetime
    actor: str
    action: str
    key_id: str
    key_name: str | None
    key_short_id: str | None
    detail: dict[str, Any]


def audit(engine: Engine, *, page: int = 1, page_size: int = 50) -> tuple[list[AuditItem], int]:
    """Operator actions, newest first."""
    page, page_size = max(1, page), max(1, page_size)
    a = AUDIT.c
    with engine.connect() as conn:
        total = _int(conn.execute(select(func.count()).select_from(AUDIT)).scalar())
        rows = conn.execute(select(a.at, a.actor, a.action, a.key_id, a.detail)
                            .order_by(a.at.desc(), a.id.desc()).limit(page_size).offset((page - 1) * page_size)).all()
        names = _key_names(conn, [r.key_id for r in rows])
    return [AuditItem(utc(r.at), r.actor, r.action, r.key_id, names.get(r.key_id, (None, None))[1],
                      names.get(r.key_id, (None, None))[0], json.loads(r.detail or "{}")) for r in rows], total


@dataclass(frozen=True, slots=True)
class AlertItem:
    kind: str
    subject: str
    period: str
    created_at: datetime
    text: str
    delivered: bool


def alerts(engine: Engine, *, limit: int = 100) -> list[AlertItem]:
    """The most recent alerts raised."""
    c = ALERTS.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.kind, c.subject, c.period, c.created_at, c.text, c.delivered)
                            .order_by(c.created_at.desc()).limit(limit)).all()
    return [AlertItem(r.kind, r.subject, r.period, utc(r.created_at), r.text, bool(r.delivered)) for r in rows]


# -- personal data ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PiiKeyCounts:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    counts: dict[str, int]
    blocked: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PiiCounts:
    """Personal data the guard found, per kind, in total and per client key; counts, never
    values. ``total``/``counts``: in requests that went upstream (masked, or sent under
    ``off``), from the ledger rows; ``blocked``: in requests refused under ``block``
    (``pii_detected``), which leave no ledger row, from the request log."""

    total: dict[str, int]
    by_key: list[PiiKeyCounts]
    blocked: dict[str, int] = field(default_factory=dict)


def _pii_sums(conn: Connection, table: Any, column: Any, key_column: Any,
              conditions: Sequence[ColumnElement[bool]]) -> dict[str | None, dict[str, int]]:
    """Sums per client key and kind of a ``pii_counts`` column (JSON text per row), in the
    database: one JSON-expanding scan bounded by the conditions."""
    if conn.dialect.name == "postgresql":
        pairs = func.json_each_text(cast(column, JSON)).table_valued("key", "value").lateral()
    else:
        pairs = func.json_each(column).table_valued("key", "value")
    q = (select(key_column, pairs.c.key, func.sum(cast(pairs.c.value, BigInteger)))
         .select_from(table).join(pairs, true())
         .where(column.is_not(None), *conditions)
         .group_by(key_column, pairs.c.key))
    per_key: dict[str | None, dict[str, int]] = {}
    for key_id, kind, n in conn.execute(q):
        per_key.setdefault(key_id, {})[kind] = _int(n)
    return per_key


def _summed(per_key: dict[str | None, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in per_key.values():
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items()))


def pii_counts(engine: Engine, flt: LedgerFilter) -> PiiCounts:
    """Per-kind sums of the ledger's ``pii_counts`` (requests sent) and of the request log's
    for ``pii_detected`` refusals (requests blocked), over ``flt``'s period and key; keys
    ranked by all they had found."""
    refused = [_requests.error_code == "pii_detected",
               *RequestFilter(None, flt.client_key_id, flt.since, flt.until).conditions()]
    with engine.connect() as conn:
        sent = _pii_sums(conn, SPEND, _spend.pii_counts, _spend.client_key_id, flt.conditions())
        blocked = _pii_sums(conn, REQUESTS, _requests.pii_counts, _requests.client_key_id, refused)
        names = _key_names(conn, [k for k in {*sent, *blocked} if k is not None])
    ranked = sorted({*sent, *blocked}, key=lambda k: (-sum(sent.get(k, {}).values()) - sum(blocked.get(k, {}).values()),
                                                      k or ""))
    by_key = []
    for key_id in ranked:
        short_id, name = names.get(key_id or "") or (None, None)
        by_key.append(PiiKeyCounts(key_id, short_id, name, dict(sorted(sent.get(key_id, {}).items())),
                                   dict(sorted(blocked.get(key_id, {}).items()))))
    return PiiCounts(_summed(sent), by_key, _summed(blocked))
