"""Read models for the operator console (the admin API's GET routes).

Plain synchronous functions over an ``Engine``: the caller runs them in its database thread
pool. Every query is bounded by an index (a time range, a key, a conversation) and returns
aggregates or one page, never a whole table. Money stays integer nano-USD here; the entrypoint
formats it.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
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

from domain.adapters.sql.tables import BudgetCounterRow, ClientKeyRow, ConversationRow, SpendRow, TurnRow, table_of
from domain.budgets import day_period, month_period
from domain.client_keys import scope_of
from domain.money import Money

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


def utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted (SQLite compares text)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day_start(now: datetime) -> datetime:
    """Budget periods are UTC calendar days and months (``domain.budgets``): so are these."""
    now = utc(now)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def month_start(now: datetime) -> datetime:
    now = utc(now)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


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
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0

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
    ]


def _totals(row: Any) -> Totals:
    return Totals(_int(row.requests), _int(row.errors), _int(row.input_tokens), _int(row.output_tokens),
                  _int(row.cost_nanos))


def _day_expr(engine: Engine) -> ColumnElement[Any]:
    """The UTC calendar day of a ledger row (a date, or 'YYYY-MM-DD' text on SQLite)."""
    if engine.dialect.name == "postgresql":
        # literal SQL, no bound parameters: GROUP BY / GROUPING SETS must match it textually
        return literal_column("((spend_ledger.created_at AT TIME ZONE 'UTC')::date)")
    # SQLite stores UTC wall-clock text 'YYYY-MM-DD HH:MM:SS...'
    return func.substr(_spend.created_at, 1, 10)


# -- overview -------------------------------------------------------------------------------------

def overview(engine: Engine, now: datetime, *, top: int = 5, days: int = 30) -> Overview:
    """Today and this month (UTC, like budget periods), the month's top models and clients,
    and spend per day over the last ``days`` days: one range scan on ``ix_spend_created_at``.

    PostgreSQL aggregates every panel in that one pass with GROUPING SETS; SQLite (small,
    embedded installs) groups by (day, model, client) and the panels are folded here."""
    today0, month0 = day_start(now), month_start(now)
    window0 = today0 - timedelta(days=days - 1)
    today_s, month_s, window_s = today0.date().isoformat(), month0.date().isoformat(), window0.date().isoformat()
    today, month = _Acc(), _Acc()
    per_day: dict[str, _Acc] = {}
    per_model: dict[str, _Acc] = {}
    per_client: dict[str | None, _Acc] = {}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            _overview_grouping_sets(conn, engine, min(month0, window0), month0, month, per_day, per_model, per_client)
        else:
            day = _day_expr(engine).label("day")
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

        def ranked(groups: dict[Any, _Acc]) -> list[tuple[Any, Totals]]:
            items = sorted(groups.items(), key=lambda kv: (-kv[1].cost_nanos, -kv[1].requests, str(kv[0])))
            return [(k, acc.totals()) for k, acc in items[:top]]

        models = ranked(per_model)
        clients = ranked(per_client)
        names = _key_names(conn, [k for k, _ in clients if k])
    by_day = []
    for i in range(days):
        d = (window0 + timedelta(days=i)).date().isoformat()
        by_day.append(GroupRow(d, d, per_day[d].totals() if d in per_day and d >= window_s else Totals()))
    return Overview(
        today=today.totals(), month=month.totals(),
        top_models=[GroupRow(k, k, t) for k, t in models],
        top_clients=[_client_group(k, names.get(k), t) for k, t in clients],
        by_day=by_day)


def _overview_grouping_sets(conn: Any, engine: Engine, start: datetime, month0: datetime, month: _Acc,
                            per_day: dict[str, _Acc], per_model: dict[str, _Acc],
                            per_client: dict[str | None, _Acc]) -> None:
    day = _day_expr(engine)
    in_month = _spend.created_at >= month0
    # Every set reads the same scan: days over the whole window; models, clients and the
    # month's total only over this month (the window can start in the previous month).
    cols = [
        func.count().filter(in_month).label("m_requests"),
        func.count().filter(and_(in_month, _spend.outcome == "error")).label("m_errors"),
        func.sum(_spend.input_tokens).filter(in_month).label("m_input_tokens"),
        func.sum(_spend.output_tokens).filter(in_month).label("m_output_tokens"),
        func.sum(_spend.cost_nanos).filter(in_month).label("m_cost_nanos"),
        *_totals_columns(),
        func.grouping(day).label("g_day"), func.grouping(_spend.model).label("g_model"),
        func.grouping(_spend.client_key_id).label("g_client"),
    ]
    rows = conn.execute(
        select(day.label("day"), _spend.model, _spend.client_key_id, *cols).where(_spend.created_at >= start)
        .group_by(func.grouping_sets(tuple_(day), tuple_(_spend.model), tuple_(_spend.client_key_id), tuple_()))
    ).all()
    for r in rows:
        m = _Acc(_int(r.m_requests), _int(r.m_errors), _int(r.m_input_tokens), _int(r.m_output_tokens),
                 _int(r.m_cost_nanos))
        if not r.g_day:
            per_day[str(r.day)[:10]] = _Acc(_int(r.requests), _int(r.errors), _int(r.input_tokens),
                                             _int(r.output_tokens), _int(r.cost_nanos))
        elif not r.g_model:
            if m.requests:
                per_model[r.model] = m
        elif not r.g_client:
            if m.requests:
                per_client[r.client_key_id] = m
        else:
            month.add(m)


@dataclass(slots=True)
class _Acc:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0

    def add(self, row: Any) -> None:  # a query row or another _Acc
        self.requests += _int(row.requests)
        self.errors += _int(row.errors)
        self.input_tokens += _int(row.input_tokens)
        self.output_tokens += _int(row.output_tokens)
        self.cost_nanos += _int(row.cost_nanos)

    def totals(self) -> Totals:
        return Totals(self.requests, self.errors, self.input_tokens, self.output_tokens, self.cost_nanos)


def _client_group(key_id: str | None, named: tuple[str, str] | None, totals: Totals) -> ClientGroupRow:
    short_id, name = named if named else (None, None)
    return ClientGroupRow(key_id, short_id, name, totals)


def _key_names(conn: Any, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    if not ids:
        return {}
    rows = conn.execute(select(_keys.id, _keys.short_id, _keys.name).where(_keys.id.in_(list(set(ids)))))
    return {r.id: (r.short_id, r.name) for r in rows}


# -- spend ----------------------------------------------------------------------------------------

def spend(engine: Engine, group_by: GroupBy, flt: LedgerFilter, *, limit: int = 1000) -> tuple[list[GroupRow], Totals]:
    """Ledger totals grouped by day (UTC), model, key source or client key, plus the grand
    total under the same filters. Callers should bound ``since`` (the console does) so the
    scan stays on ``ix_spend_created_at`` / ``ix_spend_*_created``."""
    conds = flt.conditions()
    with engine.connect() as conn:
        total = _totals(conn.execute(select(*_totals_columns()).where(*conds)).one())
        if group_by == "day":
            key = _day_expr(engine).label("key")
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
    "created_at", "request_id", "client_key_id", "conversation_id", "route", "model", "key_source",
    "fallback_reason", "outcome", "error_code", "input_tokens", "cached_input_tokens", "output_tokens",
    "reasoning_tokens", "cost_usd", "charged_usd", "priced", "estimated", "catalog_version", "latency_ms",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    # request ids and model names come from callers: a leading "=" would run as a formula
    # in a spreadsheet that opens the export.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def ledger_csv(engine: Engine, flt: LedgerFilter, *, limit: int = 100_000, chunk_rows: int = 5_000) -> Iterator[str]:
    """The ledger rows under ``flt`` as CSV text chunks, oldest first, at most ``limit`` rows.

    Keyset pagination on (created_at, id): each chunk is its own short query, so no connection
    or cursor is held between chunks and memory stays at one chunk."""
    conds = flt.conditions()
    plain = [c for c in LEDGER_CSV_COLUMNS if c not in ("created_at", "cost_usd", "charged_usd")]
    cols = [_spend.id, _spend.created_at, *(_spend[c] for c in plain), _spend.cost_nanos, _spend.charged_nanos]
    at = {c: i for i, c in enumerate(LEDGER_CSV_COLUMNS)}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LEDGER_CSV_COLUMNS)
    yield _drain(buf)
    sent, after = 0, None
    while sent < limit:
        q = select(*cols).where(*conds)
        if after is not None:
            q = q.where(or_(_spend.created_at > after[0], and_(_spend.created_at == after[0], _spend.id > after[1])))
        q = q.order_by(_spend.created_at, _spend.id).limit(min(chunk_rows, limit - sent))
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        for r in rows:
            out: list[Any] = [None] * len(LEDGER_CSV_COLUMNS)
            out[at["created_at"]] = utc(r[1]).isoformat()
            for i, c in enumerate(plain, start=2):
                v = r[i]
                out[at[c]] = "" if v is None else _csv_cell(v)
            out[at["cost_usd"]] = "" if r[-2] is None else usd_8(r[-2])
            out[at["charged_usd"]] = usd_8(r[-1])
            writer.writerow(out)
        sent += len(rows)
        after = (rows[-1].created_at, rows[-1].id)
        yield _drain(buf)
        if len(rows) < chunk_rows:
            return


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


def keys(engine: Engine, now: datetime, *, key_id: str | None = None) -> list[KeyView]:
    """Client keys (never their hashes) with what each spent today and this month, read from
    the budget counters by primary key (scope 'key:<id>', periods 'd:…' and 'm:…')."""
    now = utc(now)
    day, month = day_period(now), month_period(now)
    q = select(_keys.id, _keys.short_id, _keys.name, _keys.created_at, _keys.revoked_at, _keys.daily_limit_nanos,
               _keys.monthly_limit_nanos, _keys.may_use_server_key, _keys.pii_policy)
    q = q.where(_keys.id == key_id) if key_id is not None else q.order_by(_keys.created_at, _keys.id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        scopes = [scope_of(r.id) for r in rows]
        spent: dict[tuple[str, str], int] = {}
        for start in range(0, len(scopes), 500):
            part = scopes[start:start + 500]
            pairs = [(s, p) for s in part for p in (day, month)]
            spent.update({(r.scope, r.period): _int(r.spent_nanos) for r in conn.execute(
                select(_counters.scope, _counters.period, _counters.spent_nanos)
                .where(tuple_(_counters.scope, _counters.period).in_(pairs)))})
    return [KeyView(id=r.id, short_id=r.short_id, name=r.name, created_at=utc(r.created_at),
                    revoked_at=utc(r.revoked_at) if r.revoked_at else None, daily_limit_nanos=r.daily_limit_nanos,
                    monthly_limit_nanos=r.monthly_limit_nanos, may_use_server_key=bool(r.may_use_server_key),
                    pii_policy=r.pii_policy,
                    spent_today_nanos=spent.get((scope_of(r.id), day), 0),
                    spent_month_nanos=spent.get((scope_of(r.id), month), 0))
            for r in rows]


def key(engine: Engine, now: datetime, key_id: str) -> KeyView | None:
    found = keys(engine, now, key_id=key_id)
    return found[0] if found else None



# -- personal data ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PiiKeyCounts:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class PiiCounts:
    """Personal data the guard found (masked or sent under ``off``; a blocked request leaves
    no row), per kind, in total and per client key. Counts, never values."""

    total: dict[str, int]
    by_key: list[PiiKeyCounts]


def pii_counts(engine: Engine, flt: LedgerFilter) -> PiiCounts:
    """Sums of ``spend_ledger.pii_counts`` (JSON text per row) over the filtered rows, in the
    database (one JSON-expanding scan bounded by the filter's time range)."""
    if engine.dialect.name == "postgresql":
        pairs = func.json_each_text(cast(_spend.pii_counts, JSON)).table_valued("key", "value").lateral()
    else:
        pairs = func.json_each(_spend.pii_counts).table_valued("key", "value")
    q = (select(_spend.client_key_id, pairs.c.key, func.sum(cast(pairs.c.value, BigInteger)))
         .select_from(SPEND).join(pairs, true())
         .where(_spend.pii_counts.is_not(None), *flt.conditions())
         .group_by(_spend.client_key_id, pairs.c.key))
    total: dict[str, int] = {}
    per_key: dict[str | None, dict[str, int]] = {}
    with engine.connect() as conn:
        for key_id, kind, n in conn.execute(q):
            total[kind] = total.get(kind, 0) + _int(n)
            per_key.setdefault(key_id, {})[kind] = _int(n)
        names = _key_names(conn, [k for k in per_key if k is not None])
    ranked = sorted(per_key.items(), key=lambda item: -sum(item[1].values()))
    by_key = []
    for key_id, counts in ranked:
        short_id, name = names.get(key_id or "") or (None, None)
        by_key.append(PiiKeyCounts(key_id, short_id, name, dict(sorted(counts.items()))))
    return PiiCounts(dict(sorted(total.items())), by_key)
