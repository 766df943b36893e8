"""The spend ledger: batched writes off the request path, a local spool when the database is
away, idempotent replay by request id, and stale holds turned into ledger rows."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SqlTimeout
from sqlmodel import SQLModel, col

from domain.adapters.sql.pg_batches import PgLedgerStatements, uses_psycopg
from domain.adapters.sql.repositories import apply_deltas, close_reservations
from domain.adapters.sql.spool import SqliteSpool, encode
from domain.adapters.sql.tables import (
    BackgroundResponseRow,
    BudgetReservationRow,
    ClientKeyRow,
    ConversationRow,
    SpendRow,
    TurnRow,
    table_of,
)
from domain.budgets import BudgetLine, Reservation, spend_lines
from domain.conversations import Turn
from domain.key_policy import FallbackReason, KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.periods import KST
from domain.usage import TokenUsage
from domain.use_cases.stored_responses import ResponseReference

log = logging.getLogger(__name__)

_FLUSH = object()  # a queue item asking the writer to replay the spool now (see ``flush``)

# Index-safe bounds, in characters (4 bytes each at most: far below PostgreSQL's B-tree limit).
ID_LIMIT = 512
NAME_LIMIT = 200
CODE_LIMIT = 128
UPSTREAM_LIMIT = 64  # the column's own bound (an upstream's name comes from UPSTREAMS_FILE)


def clean(value: str, anomalies: set[str]) -> str:
    """What PostgreSQL TEXT can hold: NUL removed, lone surrogates replaced."""
    out = value.replace("\x00", "")
    if out != value:
        anomalies.add("nul_removed")
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = out.encode("utf-8", "replace").decode("utf-8")
        anomalies.add("text_replaced")
    return out


def bounded(value: str, limit: int, anomalies: set[str] | None = None) -> str:
    """``value`` cleaned and, when longer than ``limit``, its prefix plus a hash of the
    whole, so distinct long values stay distinct and the same value always maps the same."""
    seen: set[str] = set() if anomalies is None else anomalies
    out = clean(value, seen)
    if len(out) <= limit:
        return out
    seen.add("id_shortened")
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{out[:limit - 25]}~{digest}"


def _with_key(row: type[SQLModel], creator: Any) -> Any:
    """A row joined to the client key that created it (none for an anonymous creator)."""
    keys = table_of(ClientKeyRow)
    return table_of(row).outerjoin(keys, keys.c.id == creator)


def _chain_of(creator: Any) -> Any:
    """The rotation chain of the creating key, as ``ClientIdentity.owner`` names it: its
    ``budget_key_id`` (a rotated key's chain's first key), else its own id. Read from the key
    row joined in the same statement, so the ownership check costs no extra query, and rows
    stored before any rotation (the first key's own id) stay the chain's."""
    return func.coalesce(table_of(ClientKeyRow).c.budget_key_id, creator)


def _opt(value: str | None, limit: int, anomalies: set[str]) -> str | None:
    return None if value is None else bounded(value, limit, anomalies)


def stored_request_id(request_id: str) -> str:
    return bounded(request_id, ID_LIMIT)


def _spend_row(r: UsageRecord, conversation_pk: int | None) -> dict[str, Any]:
    """The row as stored: never refused for what an upstream sent. Long values are bounded,
    NUL removed, and what was changed is listed in ``anomalies`` (the row is then marked
    estimated when the usage itself was normalised)."""
    anomalies: set[str] = set()
    if r.usage.anomaly:
        anomalies.add(r.usage.anomaly)
    row = {"request_id": bounded(r.request_id, ID_LIMIT, anomalies), "created_at": r.created_at,
           "client_key_id": r.client_key_id, "conversation_id": conversation_pk,
           "response_id": _opt(r.response_id, ID_LIMIT, anomalies), "route": bounded(r.route, NAME_LIMIT, anomalies),
           "model": bounded(r.model, NAME_LIMIT, anomalies), "key_source": r.key_source.value,
           "fallback_reason": r.fallback_reason.value if r.fallback_reason else None, "outcome": r.outcome.value,
           "error_code": _opt(r.error_code, CODE_LIMIT, anomalies), "input_tokens": r.usage.input_tokens,
           "cached_input_tokens": r.usage.cached_input_tokens, "output_tokens": r.usage.output_tokens,
           "reasoning_tokens": r.usage.reasoning_tokens, "cost_nanos": r.cost.nanos if r.cost else None,
           "charged_nanos": r.charged.nanos, "priced": r.priced, "estimated": r.estimated or r.usage.anomaly is not None,
           "catalog_version": bounded(r.catalog_version, CODE_LIMIT, anomalies), "latency_ms": r.latency_ms,
           "upstream": _opt(r.upstream, UPSTREAM_LIMIT, anomalies), "upstream_attempts": r.upstream_attempts,
           "pii_counts": json.dumps(dict(r.pii_counts), sort_keys=True, separators=(",", ":")) if r.pii_counts
           else None}
    row["anomalies"] = ",".join(sorted(anomalies)) or None
    return row


@functools.cache
def _insert_spend(dialect: str) -> Any:
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    return (ins(SpendRow).on_conflict_do_nothing(index_elements=["request_id"])
            .returning(col(SpendRow.request_id)))


# A turn's two statements, built once with bound parameters: every awaited turn is its own
# small transaction (it is stored before the answer goes out), and building an UPDATE/INSERT
# with literal values cost SQLAlchemy its construction and cache-key walk per turn (~9 % of
# the gateway's samples on /api/v1/chat with a replayed conversation, bench/README.md).
@functools.cache
def _count_turn() -> Any:
    return (update(ConversationRow).where(col(ConversationRow.id) == bindparam("pk"))
            .values(turn_count=ConversationRow.turn_count + 1, updated_at=bindparam("at"))
            .returning(col(ConversationRow.turn_count)))


@functools.cache
def _insert_turn() -> Any:
    return insert(TurnRow)


class _CoreStatements:
    """The batch's statements through SQLAlchemy Core (SQLite; PostgreSQL has its own in
    ``pg_batches``, with the same methods)."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self._conn, self._dialect = conn, dialect

    def conversations(self, named: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], int]:
        create, find = _conversation_statements(self._dialect)
        self._conn.execute(create, [{"owner": owner, "external_id": ext, "turn_count": 0, "created_at": at,
                                     "updated_at": at} for (owner, ext), at in sorted(named.items())])
        rows = self._conn.execute(find, {"keys": list(named)})
        return {(owner, ext): pk for pk, owner, ext in rows if pk is not None}

    def insert_spend(self, rows: list[dict[str, Any]]) -> set[str]:
        # One cached statement run as executemany ("insertmanyvalues" batches it into
        # multi-row INSERTs); a literal multi-row VALUES would be recompiled per batch size.
        return {row[0] for row in self._conn.execute(_insert_spend(self._dialect), rows)}

    def close_reservations(self, ids: list[str]) -> set[str]:
        return close_reservations(self._conn, ids)

    def add_turn(self, conversation_pk: int, at: datetime, turn: dict[str, Any]) -> int:
        index: int = self._conn.execute(_count_turn(), {"pk": conversation_pk, "at": at}).scalar_one()
        self._conn.execute(_insert_turn(), {**turn, "conversation_id": conversation_pk, "turn_index": index})
        return index

    def apply_deltas(self, deltas: dict[tuple[str, str], tuple[int, int]]) -> None:
        apply_deltas(self._conn, deltas)


_Statements = _CoreStatements | PgLedgerStatements


def _statements(conn: Connection, engine: Engine) -> _Statements:
    if uses_psycopg(conn):
        return PgLedgerStatements(conn)
    return _CoreStatements(conn, engine.dialect.name)


def _conversation_ids(statements: _Statements, records: list[UsageRecord]) -> dict[tuple[str, str], int]:
    named = {(r.owner or "", r.conversation_id): r.created_at for r in records if r.conversation_id}
    return statements.conversations(named) if named else {}


@functools.cache
def _conversation_statements(dialect: str) -> tuple[Any, Any]:
    """The conversations' create-if-missing (run as executemany) and their ids by (owner,
    external id) (an expanding IN): built once, not per batch, like ``_insert_spend``."""
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    find = select(col(ConversationRow.id), col(ConversationRow.owner), col(ConversationRow.external_id)).where(
        tuple_(ConversationRow.owner, ConversationRow.external_id).in_(bindparam("keys", expanding=True)))
    return ins(ConversationRow).on_conflict_do_nothing(), find


def write_records(engine: Engine, records: list[UsageRecord], tz: tzinfo = KST) -> list[int | None]:
    """Stores a batch in one transaction: ledger rows, turns (with their indexes) and the
    budget settlement — each reservation's hold released, each charge counted on the
    record's ``spend_lines`` (days and months of ``tz``, the budget time zone).

    A record whose request id is already in the ledger is skipped whole (its hold included:
    whoever stored that row settled it), so replaying a spool twice, or a row racing the
    stale-hold sweep, changes nothing. Statements are per batch, not per record (one
    multi-row insert, one delete of reservations, one upsert of the counters), so the
    writer holds the hot counter rows only briefly.
    """
    first: dict[str, UsageRecord] = {}
    for r in records:
        first.setdefault(stored_request_id(r.request_id), r)
    given, records = records, list(first.values())
    with engine.begin() as conn:
        statements = _statements(conn, engine)
        conversations = _conversation_ids(statements, records)
        pk_of = {r.request_id: conversations.get((r.owner or "", r.conversation_id or "")) for r in records}
        stored = statements.insert_spend([_spend_row(r, pk_of[r.request_id]) for r in records])
        fresh = [r for r in records if stored_request_id(r.request_id) in stored]
        released = statements.close_reservations([r.reservation.id for r in fresh if r.reservation])
        deltas = _settlement(fresh, released, tz)
        turns: dict[str, int] = {}
        for r in fresh:
            pk = pk_of[r.request_id]
            if r.turn is not None and pk is not None:
                # The counter update takes the conversation's row lock, so two turns racing on
                # one conversation get distinct, consecutive indexes.
                t, junk = r.turn, set[str]()
                turns[r.request_id] = statements.add_turn(pk, r.created_at, {
                    "request_id": bounded(t.request_id, ID_LIMIT, junk), "created_at": t.created_at,
                    "system_prompt": clean(t.system_prompt, junk), "prompt": clean(t.prompt, junk),
                    "reply": clean(t.reply, junk), "model": bounded(t.model, NAME_LIMIT, junk)})
        statements.apply_deltas(deltas)
    seen: set[str] = set()
    indexes = []
    for r in given:  # a request id repeated within the batch is a duplicate too
        indexes.append(None if r.request_id in seen else turns.get(r.request_id))
        seen.add(r.request_id)
    return indexes


def _settlement(records: list[UsageRecord], released: set[str],
                tz: tzinfo = KST) -> dict[tuple[str, str], tuple[int, int]]:
    """(held, spent) deltas per counter: each charge on the record's spend lines, each hold
    that was still open taken off its own lines."""
    deltas: dict[tuple[str, str], tuple[int, int]] = {}
    for r in records:
        for line in spend_lines(r.budget_owner, r.created_at, tz):
            held, spent = deltas.get((line.scope, line.period), (0, 0))
            deltas[(line.scope, line.period)] = (held, spent + r.charged.nanos)
        if r.reservation and r.reservation.id in released:
            for line in r.reservation.lines:
                held, spent = deltas.get((line.scope, line.period), (0, 0))
                deltas[(line.scope, line.period)] = (held - r.reservation.amount.nanos, spent)
    return deltas


def settle_without_row(engine: Engine, record: UsageRecord, tz: tzinfo = KST) -> bool:
    """A record whose row the database refused still settles its budget: the hold is
    released and the charge counted, so a refused row never frees a key's budget."""
    with engine.begin() as conn:
        exists = conn.execute(select(col(SpendRow.id)).where(
            col(SpendRow.request_id) == stored_request_id(record.request_id))).first()
        if exists is not None:
            return False
        released = close_reservations(conn, [record.reservation.id] if record.reservation else [])
        apply_deltas(conn, _settlement([record], released, tz))
    return True


ORPHAN_LOCK = 0x6C65646765  # pg advisory lock key: one sweeper at a time across replicas


def sweep_stale_holds(engine: Engine, older_than: datetime, limit: int = 500, tz: tzinfo = KST) -> int:
    """Turns holds older than ``older_than`` into ledger rows: the replica that took them
    died before storing the request's row, so the request may have been served and is
    charged at the held amount (``outcome="orphaned"``, estimated) — never released free.

    Exactly one row per hold, whatever runs concurrently: the orphan row and the real row
    share the request id (unique), and the hold's deletion is the proof it is settled
    once. The orphan row is inserted before the hold is deleted — the order the writer
    uses — so the two never wait on each other crosswise. A hold whose request already has
    a row is only released (that row counted the charge); one released while we swept is
    not charged; a background response still being polled keeps its hold. Returns the
    number of holds turned into rows."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql" and not conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": ORPHAN_LOCK}).scalar():
            return 0  # another replica is sweeping right now
        table = BudgetReservationRow.__table__  # type: ignore[attr-defined]
        background = BackgroundResponseRow.__table__  # type: ignore[attr-defined]
        # A background response still being polled keeps its hold, however old.
        waiting = select(background.c.reservation_id).where(background.c.reservation_id == table.c.id).exists()
        # with the budget its key draws on (a key rotated since: its successor's, the same)
        keys = table_of(ClientKeyRow)
        holds = conn.execute(select(table, keys.c.budget_key_id).outerjoin(keys, keys.c.id == table.c.client_key_id)
                             .where(table.c.created_at < older_than, ~waiting)
                             .order_by(table.c.created_at).limit(limit)).all()
        if not holds:
            return 0
        rid = {h.id: stored_request_id(h.request_id or f"hold:{h.id}") for h in holds}
        # One row per request. A request can hold twice (its caller's key refused, then the
        # server's key): the hold that charges most makes the row, the other is released.
        first_hold: dict[str, Any] = {}
        for h in sorted(holds, key=_orphan_charge, reverse=True):
            first_hold.setdefault(rid[h.id], h)
        rows = sorted((_orphan_row(h, r) for r, h in first_hold.items()), key=lambda row: row["request_id"])
        inserted = {row[0] for row in conn.execute(_insert_spend(engine.dialect.name), rows)}
        closed = close_reservations(conn, [h.id for h in holds])
        undo = [r for r, h in first_hold.items() if r in inserted and h.id not in closed]
        if undo:
            conn.execute(delete(SpendRow).where(SpendRow.request_id.in_(undo)))  # type: ignore[attr-defined]
        deltas: dict[tuple[str, str], tuple[int, int]] = {}
        charged = 0
        for h in holds:
            if h.id not in closed:
                continue
            for scope, period in _decode_lines(h.lines):
                held, spent = deltas.get((scope, period), (0, 0))
                deltas[(scope, period)] = (held - h.amount_nanos, spent)
            if rid[h.id] in inserted and first_hold[rid[h.id]] is h:
                charged += 1
                for line in spend_lines(h.budget_key_id or h.client_key_id, h.created_at, tz):
                    held, spent = deltas.get((line.scope, line.period), (0, 0))
                    deltas[(line.scope, line.period)] = (held, spent + _orphan_charge(h))
        apply_deltas(conn, deltas)
    if charged:
        log.warning("charged %d stale budget holds as orphaned ledger rows", charged)
    return charged


def _orphan_charge(h: Any) -> int:
    return 0 if h.key_source == KeySource.USER.value else int(h.amount_nanos)


def _decode_lines(lines: str) -> list[tuple[str, str]]:
    return [(part.split("|", 1)[0], part.split("|", 1)[1]) for part in lines.split(";") if "|" in part]


def _orphan_row(h: Any, request_id: str) -> dict[str, Any]:
    anomalies: set[str] = set()
    return {"request_id": request_id, "created_at": h.created_at, "client_key_id": h.client_key_id,
            "conversation_id": None, "response_id": None, "route": bounded(h.route or "", NAME_LIMIT, anomalies),
            "model": bounded(h.model or "", NAME_LIMIT, anomalies), "key_source": h.key_source or KeySource.SERVER.value,
            "fallback_reason": None, "outcome": Outcome.ORPHANED.value, "error_code": None, "input_tokens": 0,
            "cached_input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0, "cost_nanos": h.amount_nanos,
            "charged_nanos": _orphan_charge(h), "priced": True, "estimated": True,
            "catalog_version": bounded(h.catalog_version or "", CODE_LIMIT, anomalies), "latency_ms": 0,
            "anomalies": ",".join(sorted(anomalies)) or None}


def record_to_json(r: UsageRecord) -> dict[str, Any]:
    d = asdict(r)
    d["created_at"] = r.created_at.isoformat()
    d["cost"] = r.cost.nanos if r.cost else None
    d["key_source"] = r.key_source.value
    d["outcome"] = r.outcome.value
    d["fallback_reason"] = r.fallback_reason.value if r.fallback_reason else None
    if r.reservation:
        d["reservation"] = {"id": r.reservation.id, "amount": r.reservation.amount.nanos,
                            "lines": [[ln.scope, ln.period] for ln in r.reservation.lines]}
    if r.turn:
        d["turn"] = {**asdict(r.turn), "created_at": r.turn.created_at.isoformat()}
    return d


def record_from_json(d: dict[str, Any]) -> UsageRecord:
    res = d.get("reservation")
    turn = d.get("turn")
    return UsageRecord(
        request_id=d["request_id"], created_at=datetime.fromisoformat(d["created_at"]),
        client_key_id=d["client_key_id"], route=d["route"], model=d["model"], usage=TokenUsage(**d["usage"]),
        cost=None if d["cost"] is None else Money(d["cost"]), catalog_version=d["catalog_version"],
        key_source=KeySource(d["key_source"]), outcome=Outcome(d["outcome"]), estimated=d["estimated"],
        latency_ms=d["latency_ms"],
        fallback_reason=FallbackReason(d["fallback_reason"]) if d["fallback_reason"] else None,
        conversation_id=d["conversation_id"], error_code=d.get("error_code"), response_id=d.get("response_id"),
        upstream=d.get("upstream"), upstream_attempts=d.get("upstream_attempts", 1),
        pii_counts=d.get("pii_counts") or {}, budget_key_id=d.get("budget_key_id"),
        reservation=Reservation(res["id"], tuple(BudgetLine(sc, p, None) for sc, p in res["lines"]),
                                Money(res["amount"])) if res else None,
        turn=Turn(**{**turn, "created_at": datetime.fromisoformat(turn["created_at"])}) if turn else None)


_Item = tuple[UsageRecord, "Future[int | None] | None"]


class SqlSpendLedger:
    """A bounded queue drained by one writer thread in batches.

    ``submit`` never blocks: when the queue is full or the database is down, records go to
    the local SQLite spool (``SqliteSpool``), replayed (idempotently) once the database
    answers. A record the database refuses is set aside in the spool file, its budget
    settled all the same. The writer survives any error in a round; should its thread die
    anyway, ``alive`` says so (``/readyz`` turns red) and ``ensure_running`` restarts it.
    ``close`` drains everything before the process exits.
    """

    def __init__(self, engine: Engine, *, spool_path: str | Path, max_queue: int = 10_000,
                 batch_size: int = 200, retry_seconds: float = 1.0, tz: tzinfo = KST,
                 linger_seconds: float = 0.02) -> None:
        self.engine = engine
        # How long a batch of submitted records waits for more before it is written: a
        # transaction's fixed cost (begin, reservations, counters, commit) is then shared by
        # the rows of a busy moment instead of paid per row. A record someone awaits
        # (``record``: a turn, a durable row), ``flush`` and ``close`` do not wait.
        self._linger = linger_seconds
        # Wakes a lingering writer: set when an awaited record, a flush or close is queued.
        # (A writer waiting on the queue itself would be woken by every submit: a thread
        # switch per row.)
        self._urgent = threading.Event()
        self._tz = tz  # BUDGET_TIMEZONE: the counters' days and months
        self._queue: queue.Queue[_Item | object | None] = queue.Queue(max_queue)
        self.spool = SqliteSpool(spool_path)
        self._batch_size = batch_size
        self._retry = retry_seconds
        self._thread: threading.Thread | None = None
        self._started = False
        self.written = 0
        self.spooled = 0
        self.set_aside = 0
        self.restarts = 0
        self.errors = 0
        self.db_healthy = True

    # -- port ---------------------------------------------------------------------------
    def submit(self, record: UsageRecord) -> None:
        self._put(record, None)

    async def record(self, record: UsageRecord) -> int | None:
        future: Future[int | None] = Future()
        self._put(record, future)
        self._urgent.set()
        return await asyncio.wrap_future(future)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        if self._thread is None:
            self._spawn()

    def _spawn(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spend-ledger-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The writer thread runs (or was never started: records are then written inline)."""
        return not self._started or (self._thread is not None and self._thread.is_alive())

    def ensure_running(self) -> bool:
        """Restarts a writer thread that died; True when it had to."""
        if self._started and self._thread is not None and not self._thread.is_alive():
            log.error("the ledger writer thread died; restarting it")
            self.restarts += 1
            self._spawn()
            return True
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued (to the database, or the spool) and stop the writer."""
        self._started = False
        if self._thread is None:
            return
        if self._thread.is_alive():
            self._queue.put(None)
            self._urgent.set()
            self._thread.join(timeout)
        self._thread = None
        self.spool.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Blocks until every record submitted so far is stored (or spooled) and the spool
        has been replayed once; for tests and tools, which must not guess how long the
        writer takes."""
        if self._thread is None:
            return
        self.ensure_running()  # a dead writer would never mark the queue done
        deadline = time.monotonic() + timeout
        self._queue.put(_FLUSH, timeout=timeout)  # the writer also replays the spool before it is done
        self._urgent.set()
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                if not self._queue.all_tasks_done.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("the ledger writer did not catch up in time")

    async def response_reference(self, response_id: str) -> ResponseReference | None:
        """Whose the response is (the rotation chain of the key that created it, read from
        that key's row in the same statement) and the context it brings to a request that
        chains on it (its row's input and output tokens); a background response still running
        is known by its owner only."""
        key = bounded(response_id, ID_LIMIT)

        def run() -> ResponseReference | None:
            with self.engine.connect() as conn:
                row = conn.execute(select(_chain_of(col(SpendRow.client_key_id)), col(SpendRow.input_tokens),
                                          col(SpendRow.output_tokens))
                                   .select_from(_with_key(SpendRow, col(SpendRow.client_key_id)))
                                   .where(col(SpendRow.response_id) == key).limit(1)).first()
                if row is not None:
                    return ResponseReference(row[0], max(0, row[1]) + max(0, row[2]))
                pending = conn.execute(select(_chain_of(col(BackgroundResponseRow.client_key_id)))
                                       .select_from(_with_key(BackgroundResponseRow,
                                                              col(BackgroundResponseRow.client_key_id)))
                                       .where(col(BackgroundResponseRow.response_id) == key)).first()
                return ResponseReference(pending[0], None) if pending is not None else None
        return await asyncio.get_running_loop().run_in_executor(None, run)

    def pending(self) -> int:
        return self._queue.qsize()

    def spool_size(self) -> int:
        try:
            return self.spool.size()
        except Exception:  # the readiness probe must answer even if the spool file is gone bad
            log.warning("could not count the ledger spool", exc_info=True)
            return -1

    # -- internals ------------------------------------------------------------------------
    def _put(self, record: UsageRecord, future: Future[int | None] | None) -> None:
        if self._thread is None:
            self._write([(record, future)])
            return
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self._spool_records([record])
            if future:
                future.set_result(None)

    def _run(self) -> None:
        last_replay = 0.0
        while True:
            batch: list[_Item] = []
            taken = [0]  # queue items to mark done once handled (``flush`` waits on them)
            try:
                stop, replay_now = self._next_batch(batch, taken)
                if batch:
                    self._write(batch)
                    batch = []
                if time.monotonic() - last_replay > self._retry or stop or replay_now:
                    last_replay = time.monotonic()
                    self._replay_spool()
                if stop:
                    return
            except Exception:
                # Nothing a record or the spool does may stop the writer: log, count, go on.
                self.errors += 1
                log.exception("ledger writer round failed; continuing")
                self._rescue(batch)
                time.sleep(min(self._retry, 1.0))
            except BaseException:
                self._rescue(batch)  # the thread is being killed: keep its records, free its waiters
                raise
            finally:
                for _ in range(taken[0]):
                    self._queue.task_done()

    def _next_batch(self, batch: list[_Item], taken: list[int]) -> tuple[bool, bool]:
        """Fills ``batch``; (stop asked, spool replay asked by ``flush``)."""
        try:
            item = self._queue.get(timeout=self._retry)
        except queue.Empty:
            return False, False
        taken[0] += 1
        stop, replay_now = self._sort(item, batch)
        if stop:
            return True, False
        if self._linger > 0 and not replay_now and all(f is None for _, f in batch):
            # Linger unless the batch holds an awaited record or a flush; one is queued meanwhile: stop.
            self._urgent.wait(self._linger)
        self._urgent.clear()
        while len(batch) < self._batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False, replay_now
            taken[0] += 1
            stop, flush = self._sort(nxt, batch)
            if stop:
                return True, replay_now
            replay_now = replay_now or flush
        return False, replay_now

    @staticmethod
    def _sort(item: object, batch: list[_Item]) -> tuple[bool, bool]:
        """One queued item: (stop asked, flush asked); a record joins ``batch``."""
        if item is None:
            return True, False
        if item is _FLUSH:
            return False, True
        if isinstance(item, tuple):
            batch.append(item)
        return False, False

    def _rescue(self, batch: list[_Item]) -> None:
        try:
            if batch:
                self._spool_records([r for r, f in batch if f is None or not f.done()])
        finally:
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)

    def _store(self, records: list[UsageRecord]) -> list[int | None]:
        """Writes records; raises only when the database is unreachable. A record the
        database refuses (bad data) cannot block the others: it is written alone and, if it
        fails again, its budget is settled without the row and the record is set aside for
        an operator — never dropped, never retried forever."""
        try:
            return write_records(self.engine, records, self._tz)
        except (OperationalError, InterfaceError, SqlTimeout):
            raise
        except (SQLAlchemyError, ValueError, UnicodeError):
            if len(records) > 1:
                return [i for r in records for i in self._store([r])]
            self._refused(records[0])
            return [None]

    def _refused(self, record: UsageRecord) -> None:
        log.error("ledger refused record %s; set aside in %s", record.request_id[:80], self.spool.path,
                  exc_info=True)
        settle_without_row(self.engine, record, self._tz)
        self.spool.set_aside([("refused by the database", encode(record_to_json(record)))])
        self.set_aside += 1

    def _write(self, batch: list[_Item]) -> None:
        records = [r for r, _ in batch]
        try:
            indexes = self._store(records)
            self.db_healthy = True
            self.written += len(records)
        except SQLAlchemyError as exc:
            log.warning("ledger write failed (%s); spooling %d records", type(exc).__name__, len(records))
            self.db_healthy = False
            indexes = [None] * len(records)
            self._spool_records(records)
        for (_, future), index in zip(batch, indexes, strict=True):
            if future is not None and not future.done():
                future.set_result(index)

    def _spool_records(self, records: list[UsageRecord]) -> None:
        try:
            self.spool.append([encode(record_to_json(r)) for r in records])
            self.spooled += len(records)
        except Exception:
            # The spool itself failed (disk full, unreadable file): the records' holds stay
            # open and become orphaned rows, so the spend is still charged.
            log.exception("could not spool %d ledger records: %s", len(records),
                          ", ".join(r.request_id[:80] for r in records))

    def _replay_spool(self) -> None:
        """Stores spooled records in order, batch by batch; a row that cannot be read back
        is set aside (with its text) instead of stopping the replay."""
        while True:
            entries = self.spool.take(self._batch_size)
            if not entries:
                return
            good: list[UsageRecord] = []
            bad: dict[int, tuple[str, str]] = {}
            for seq, payload in entries:
                try:
                    good.append(record_from_json(json.loads(payload)))
                except Exception as exc:  # any malformed record: set it aside, keep going
                    bad[seq] = (f"unreadable spool record: {type(exc).__name__}", payload)
            if bad:
                self.spool.remove(bad, bad.values())
                self.set_aside += len(bad)
            try:
                if good:
                    self._store(good)
            except SQLAlchemyError:
                self.db_healthy = False
                return  # still down: keep the spool (already-written batches are skipped on replay)
            self.spool.remove([seq for seq, _ in entries if seq not in bad])
            self.db_healthy = True
            self.written += len(good)
