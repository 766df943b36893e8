"""The spend ledger: batched writes off the request path, a disk spool when the database is
away, idempotent replay by request id."""
from __future__ import annotations

import asyncio
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

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from domain.adapters.sql.repositories import settle_in, upsert_ignore
from domain.adapters.sql.tables import ConversationRow, SpendRow, TurnRow
from domain.budgets import BudgetLine, Reservation
from domain.conversations import Turn
from domain.key_policy import FallbackReason, KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.usage import TokenUsage

log = logging.getLogger(__name__)


def write_records(engine: Engine, records: list[UsageRecord]) -> list[int | None]:
    """Stores records in one transaction: turn (with its index), ledger row, settlement.

    A record whose request id is already in the ledger is skipped whole, so replaying a
    spool twice changes nothing.
    """
    ins = upsert_ignore(engine)
    indexes: list[int | None] = []
    with Session(engine) as s, s.begin():
        for r in records:
            conversation_pk = None
            turn_index = None
            if r.conversation_id is not None:
                owner = r.client_key_id or ""
                s.execute(ins(ConversationRow).values(owner=owner, external_id=r.conversation_id, turn_count=0,
                                                      created_at=r.created_at, updated_at=r.created_at)
                          .on_conflict_do_nothing())
                conversation_pk = s.execute(select(ConversationRow.id).where(
                    ConversationRow.owner == owner, ConversationRow.external_id == r.conversation_id)).scalar_one()
            stored = s.execute(ins(SpendRow).values(
                request_id=r.request_id, created_at=r.created_at, client_key_id=r.client_key_id,
                conversation_id=conversation_pk, route=r.route, model=r.model, key_source=r.key_source.value,
                fallback_reason=r.fallback_reason.value if r.fallback_reason else None, outcome=r.outcome.value,
                error_code=r.error_code, input_tokens=r.usage.input_tokens,
                cached_input_tokens=r.usage.cached_input_tokens, output_tokens=r.usage.output_tokens,
                reasoning_tokens=r.usage.reasoning_tokens, cost_nanos=r.cost.nanos if r.cost else None,
                charged_nanos=r.charged.nanos, priced=r.priced, estimated=r.estimated,
                catalog_version=r.catalog_version, latency_ms=r.latency_ms,
            ).on_conflict_do_nothing(index_elements=["request_id"]).returning(SpendRow.id))
            # RETURNING, not rowcount: an ORM-enabled INSERT on psycopg reports rowcount -1
            # even when the conflict inserted nothing, which let duplicates through.
            if stored.first() is None:
                indexes.append(None)
                continue
            if r.turn is not None and conversation_pk is not None:
                # The counter update takes the conversation's row lock, so two turns racing on
                # one conversation get distinct, consecutive indexes.
                turn_index = s.execute(update(ConversationRow).where(ConversationRow.id == conversation_pk)
                                       .values(turn_count=ConversationRow.turn_count + 1, updated_at=r.created_at)
                                       .returning(ConversationRow.turn_count)).scalar_one()
                t = r.turn
                s.add(TurnRow(conversation_id=conversation_pk, turn_index=turn_index, request_id=t.request_id,
                              created_at=t.created_at, system_prompt=t.system_prompt, prompt=t.prompt, reply=t.reply,
                              model=t.model))
                s.flush()
            if r.reservation is not None:
                settle_in(s, r.reservation, r.charged)
            indexes.append(turn_index)
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
        conversation_id=d["conversation_id"], error_code=d.get("error_code"),
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
        self._queue: queue.Queue[tuple[UsageRecord, Future[int | None] | None] | None] = queue.Queue(max_queue)
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
            self._append_spool([record])
            if future:
                future.set_result(None)

    def _run(self) -> None:
        last_replay = 0.0
        while True:
            try:
                item = self._queue.get(timeout=self._retry)
            except queue.Empty:
                item = ...
            batch: list[tuple[UsageRecord, Future[int | None] | None]] = []
            stop = item is None
            if item is not None and item is not ...:
                batch.append(item)  # type: ignore[arg-type]
            while len(batch) < self._batch_size and not stop:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            if batch:
                self._write(batch)
            if time.monotonic() - last_replay > self._retry or stop:
                last_replay = time.monotonic()
                self._replay_spool()
            if stop:
                return

    def _write(self, batch: list[tuple[UsageRecord, Future[int | None] | None]]) -> None:
        records = [r for r, _ in batch]
        try:
            indexes = write_records(self.engine, records)
            self.db_healthy = True
            self.written += len(records)
        except SQLAlchemyError as exc:
            log.warning("ledger write failed (%s); spooling %d records", type(exc).__name__, len(records))
            self.db_healthy = False
            self._append_spool(records)
            indexes = [None] * len(records)
        for (_, future), index in zip(batch, indexes, strict=True):
            if future is not None and not future.done():
                future.set_result(index)

    def _append_spool(self, records: list[UsageRecord]) -> None:
        with self._spool_lock:
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            with self._spool.open("a", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(record_to_json(r), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.spooled += len(records)

    def _replay_spool(self) -> None:
        with self._spool_lock:
            if not self._spool.exists():
                return
            lines = self._spool.read_text(encoding="utf-8").splitlines()
            records = [record_from_json(json.loads(line)) for line in lines if line.strip()]
            try:
                for start in range(0, len(records), self._batch_size):
                    write_records(self.engine, records[start:start + self._batch_size])
            except SQLAlchemyError:
                self.db_healthy = False
                return  # still down: keep the spool (already-written batches are skipped on replay)
            self.db_healthy = True
            self.written += len(records)
            self._spool.unlink()
