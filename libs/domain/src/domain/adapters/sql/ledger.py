"""The spend ledger: batched writes off the request path, a disk spool when the database is
away, idempotent replay by request id."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SqlTimeout
from sqlmodel import col

from domain.adapters.sql.repositories import apply_deltas, close_reservations, upsert_ignore
from domain.adapters.sql.tables import ConversationRow, SpendRow, TurnRow
from domain.budgets import BudgetLine, Reservation, spend_lines
from domain.conversations import Turn
from domain.key_policy import FallbackReason, KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.usage import TokenUsage

log = logging.getLogger(__name__)

_FLUSH = object()  # a queue item asking the writer to replay the spool now (see ``flush``)


def _spend_row(r: UsageRecord, conversation_pk: int | None) -> dict[str, Any]:
    return {"request_id": r.request_id, "created_at": r.created_at, "client_key_id": r.client_key_id,
            "conversation_id": conversation_pk, "response_id": r.response_id, "route": r.route, "model": r.model, "key_source": r.key_source.value,
            "fallback_reason": r.fallback_reason.value if r.fallback_reason else None, "outcome": r.outcome.value,
            "error_code": r.error_code, "input_tokens": r.usage.input_tokens,
            "cached_input_tokens": r.usage.cached_input_tokens, "output_tokens": r.usage.output_tokens,
            "reasoning_tokens": r.usage.reasoning_tokens, "cost_nanos": r.cost.nanos if r.cost else None,
            "charged_nanos": r.charged.nanos, "priced": r.priced, "estimated": r.estimated,
            "catalog_version": r.catalog_version, "latency_ms": r.latency_ms, "upstream": r.upstream,
            "upstream_attempts": r.upstream_attempts,
            "pii_counts": json.dumps(dict(r.pii_counts), sort_keys=True, separators=(",", ":")) if r.pii_counts
            else None}


@functools.cache
def _insert_spend(dialect: str) -> Any:
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    return (ins(SpendRow).on_conflict_do_nothing(index_elements=["request_id"])
            .returning(col(SpendRow.request_id)))


def _conversation_ids(conn: Connection, engine: Engine, records: list[UsageRecord]) -> dict[tuple[str, str], int]:
    named = {(r.client_key_id or "", r.conversation_id): r.created_at for r in records if r.conversation_id}
    if not named:
        return {}
    conn.execute(upsert_ignore(engine)(ConversationRow).values([
        {"owner": owner, "external_id": ext, "turn_count": 0, "created_at": at, "updated_at": at}
        for (owner, ext), at in sorted(named.items())]).on_conflict_do_nothing())
    rows = conn.execute(select(col(ConversationRow.id), col(ConversationRow.owner), col(ConversationRow.external_id)).where(
        tuple_(ConversationRow.owner, ConversationRow.external_id).in_(list(named))))
    return {(owner, ext): pk for pk, owner, ext in rows if pk is not None}


def write_records(engine: Engine, records: list[UsageRecord]) -> list[int | None]:
    """Stores a batch in one transaction: ledger rows, turns (with their indexes) and the
    budget settlement — each reservation's hold released, each charge counted on the
    record's ``spend_lines``.

    A record whose request id is already in the ledger is skipped whole, so replaying a
    spool twice changes nothing. Statements are per batch, not per record (one multi-row
    insert, one delete of reservations, one update per counter), so the writer holds the
    hot counter rows only briefly.
    """
    first: dict[str, UsageRecord] = {}
    for r in records:
        first.setdefault(r.request_id, r)
    given, records = records, list(first.values())
    with engine.begin() as conn:
        conversations = _conversation_ids(conn, engine, records)
        pk_of = {r.request_id: conversations.get((r.client_key_id or "", r.conversation_id or "")) for r in records}
        # One cached statement run as executemany ("insertmanyvalues" batches it into
        # multi-row INSERTs); a literal multi-row VALUES would be recompiled per batch size.
        stored = {row[0] for row in conn.execute(
            _insert_spend(engine.dialect.name), [_spend_row(r, pk_of[r.request_id]) for r in records])}
        fresh = [r for r in records if r.request_id in stored]
        released = close_reservations(conn, [r.reservation.id for r in fresh if r.reservation])
        deltas: dict[tuple[str, str], tuple[int, int]] = {}
        turns: dict[str, int] = {}
        for r in fresh:
            for line in spend_lines(r.client_key_id, r.created_at):
                held, spent = deltas.get((line.scope, line.period), (0, 0))
                deltas[(line.scope, line.period)] = (held, spent + r.charged.nanos)
            if r.reservation and r.reservation.id in released:
                for line in r.reservation.lines:
                    held, spent = deltas.get((line.scope, line.period), (0, 0))
                    deltas[(line.scope, line.period)] = (held - r.reservation.amount.nanos, spent)
            pk = pk_of[r.request_id]
            if r.turn is not None and pk is not None:
                # The counter update takes the conversation's row lock, so two turns racing on
                # one conversation get distinct, consecutive indexes.
                turns[r.request_id] = conn.execute(
                    update(ConversationRow).where(col(ConversationRow.id) == pk)
                    .values(turn_count=ConversationRow.turn_count + 1, updated_at=r.created_at)
                    .returning(col(ConversationRow.turn_count))).scalar_one()
                t = r.turn
                conn.execute(insert(TurnRow).values(
                    conversation_id=pk, turn_index=turns[r.request_id], request_id=t.request_id,
                    created_at=t.created_at, system_prompt=t.system_prompt, prompt=t.prompt, reply=t.reply,
                    model=t.model))
        apply_deltas(conn, deltas)
    seen: set[str] = set()
    indexes = []
    for r in given:  # a request id repeated within the batch is a duplicate too
        indexes.append(None if r.request_id in seen else turns.get(r.request_id))
        seen.add(r.request_id)
    return indexes


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
        pii_counts=d.get("pii_counts") or {},
        reservation=Reservation(res["id"], tuple(BudgetLine(sc, p, None) for sc, p in res["lines"]),
                                Money(res["amount"])) if res else None,
        turn=Turn(**{**turn, "created_at": datetime.fromisoformat(turn["created_at"])}) if turn else None)


class SqlSpendLedger:
    """A bounded queue drained by one writer thread in batches.

    ``submit`` never blocks: when the queue is full or the database is down, records go to
    an append-only, fsync'd spool file, replayed (idempotently) once the database answers.
    ``close`` drains everything before the process exits.
    """

    def __init__(self, engine: Engine, *, spool_path: str | Path, max_queue: int = 10_000,
                 batch_size: int = 200, retry_seconds: float = 1.0) -> None:
        self.engine = engine
        self._queue: queue.Queue[tuple[UsageRecord, Future[int | None] | None] | object | None] = queue.Queue(max_queue)
        self._spool = Path(spool_path)
        self._spool_lock = threading.Lock()
        self._batch_size = batch_size
        self._retry = retry_seconds
        self._thread: threading.Thread | None = None
        self.written = 0
        self.spooled = 0
        self.db_healthy = True

    # -- port ---------------------------------------------------------------------------
    def submit(self, record: UsageRecord) -> None:
        self._put(record, None)

    async def record(self, record: UsageRecord) -> int | None:
        future: Future[int | None] = Future()
        self._put(record, future)
        return await asyncio.wrap_future(future)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spend-ledger-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued (to the database, or the spool) and stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 30.0) -> None:
        """Blocks until every record submitted so far is stored (or spooled) and the spool
        has been replayed once; for tests and tools, which must not guess how long the
        writer takes."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        self._queue.put(_FLUSH, timeout=timeout)  # the writer also replays the spool before it is done
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                if not self._queue.all_tasks_done.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("the ledger writer did not catch up in time")

    async def response_owner(self, response_id: str) -> tuple[bool, str | None]:
        """(found, client key id) of the request that produced an upstream response."""
        def run() -> tuple[bool, str | None]:
            with self.engine.connect() as conn:
                row = conn.execute(select(col(SpendRow.client_key_id)).where(col(SpendRow.response_id) == response_id)
                                   .limit(1)).first()
                return (row is not None, row[0] if row else None)
        return await asyncio.get_running_loop().run_in_executor(None, run)

    def pending(self) -> int:
        return self._queue.qsize()

    def spool_size(self) -> int:
        try:
            with self._spool.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    # -- internals ------------------------------------------------------------------------
    def _put(self, record: UsageRecord, future: Future[int | None] | None) -> None:
        if self._thread is None:
            self._write([(record, future)])
            return
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self._append(self._spool, [record])
            self.spooled += 1
            if future:
                future.set_result(None)

    def _run(self) -> None:
        last_replay = 0.0
        while True:
            taken = 0  # items to mark done once written (``flush`` waits on them)
            try:
                item = self._queue.get(timeout=self._retry)
                taken += 1
            except queue.Empty:
                item = ...
            batch: list[tuple[UsageRecord, Future[int | None] | None]] = []
            stop = item is None
            replay_now = item is _FLUSH
            if isinstance(item, tuple):
                batch.append(item)
            while len(batch) < self._batch_size and not stop:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if nxt is None:
                    stop = True
                elif nxt is _FLUSH:
                    replay_now = True
                elif isinstance(nxt, tuple):
                    batch.append(nxt)
            if batch:
                self._write(batch)
            if time.monotonic() - last_replay > self._retry or stop or replay_now:
                last_replay = time.monotonic()
                self._replay_spool()
            for _ in range(taken):
                self._queue.task_done()
            if stop:
                return

    def _store(self, records: list[UsageRecord]) -> list[int | None]:
        """Writes records; raises only when the database is unreachable. A record the
        database refuses (bad data) cannot block the others: it is written alone and, if it
        fails again, kept in the rejected file for an operator — never dropped, never retried
        forever."""
        try:
            return write_records(self.engine, records)
        except (OperationalError, InterfaceError, SqlTimeout):
            raise
        except SQLAlchemyError:
            if len(records) == 1:
                log.error("ledger refused record %s; kept in %s", records[0].request_id, self.rejected_path)
                self._append(self.rejected_path, records)
                return [None]
            return [i for r in records for i in self._store([r])]

    def _write(self, batch: list[tuple[UsageRecord, Future[int | None] | None]]) -> None:
        records = [r for r, _ in batch]
        try:
            indexes = self._store(records)
            self.db_healthy = True
            self.written += len(records)
        except SQLAlchemyError as exc:
            log.warning("ledger write failed (%s); spooling %d records", type(exc).__name__, len(records))
            self.db_healthy = False
            self._append(self._spool, records)
            self.spooled += len(records)
            indexes = [None] * len(records)
        for (_, future), index in zip(batch, indexes, strict=True):
            if future is not None and not future.done():
                future.set_result(index)

    @property
    def rejected_path(self) -> Path:
        return self._spool.with_suffix(".rejected.jsonl")

    def _append(self, path: Path, records: list[UsageRecord]) -> None:
        with self._spool_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(record_to_json(r), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _replay_spool(self) -> None:
        if not self._spool.exists():
            return
        with self._spool_lock:
            lines = self._spool.read_text(encoding="utf-8").splitlines()
        records = [record_from_json(json.loads(line)) for line in lines if line.strip()]
        try:
            for start in range(0, len(records), self._batch_size):
                self._store(records[start:start + self._batch_size])
        except SQLAlchemyError:
            self.db_healthy = False
            return  # still down: keep the spool (already-written batches are skipped on replay)
        with self._spool_lock:
            # Records spooled while this replay ran stay for the next round.
            now = self._spool.read_text(encoding="utf-8").splitlines()
            rest = now[len(lines):]
            if rest:
                self._spool.write_text("\n".join(rest) + "\n", encoding="utf-8")
            else:
                self._spool.unlink()
        self.db_healthy = True
        self.written += len(records)
