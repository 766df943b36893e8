"""The request log in SQL: entries queued by the request path, written in batches by one
thread, so recording costs the request a queue put and nothing else."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeout

from domain.adapters.sql.pg_batches import insert_request_log, uses_psycopg
from domain.adapters.sql.tables import RequestLogRow, table_of
from domain.request_log import RequestLogEntry

log = logging.getLogger(__name__)

_LOG = table_of(RequestLogRow)


def _row(e: RequestLogEntry) -> dict[str, Any]:
    return {"request_id": e.request_id, "created_at": e.created_at, "route": e.route, "status": e.status,
            "error_code": e.error_code, "client_key_id": e.client_key_id, "model": e.model,
            "key_source": e.key_source, "fallback_reason": e.fallback_reason, "upstream": e.upstream,
            "latency_ms": e.latency_ms, "ttft_ms": e.ttft_ms, "cost_nanos": e.cost.nanos if e.cost is not None else None,
            "pii_counts": json.dumps(dict(e.pii_counts), sort_keys=True, separators=(",", ":")) if e.pii_counts
            else None}


def write_entries(engine: Engine, entries: list[RequestLogEntry]) -> None:
    """One transaction, one executemany insert."""
    if entries:
        with engine.begin() as conn:
            rows = [_row(e.cleaned()) for e in entries]
            if uses_psycopg(conn):
                insert_request_log(conn, rows)  # see pg_batches: a fraction of the CPU
            else:
                conn.execute(insert(_LOG), rows)


class SqlRequestLog:
    """A bounded queue drained by a writer thread in batches of up to ``batch_size``.

    ``record`` never blocks and never raises. While the database is away the writer keeps
    the batch and retries every ``retry_seconds``; when the queue is full (the database has
    been away for a long while) new entries are counted in ``dropped`` and not kept: the log
    is for operators, the ledger (with its spool) is what money relies on.
    ``close`` writes what is queued before returning.
    """

    def __init__(self, engine: Engine, *, max_queue: int = 50_000, batch_size: int = 500,
                 retry_seconds: float = 1.0, linger_seconds: float = 0.05) -> None:
        self.engine = engine
        # A batch waits this long for more entries: one insert per busy moment, not per
        # request (``close`` does not wait).
        self._linger = linger_seconds
        self._closing = threading.Event()  # wakes a lingering writer (a wait on the queue would wake per entry)
        self._queue: queue.Queue[RequestLogEntry | None] = queue.Queue(max_queue)
        self._batch_size = batch_size
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0

    def record(self, entry: RequestLogEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._closing.clear()
            self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._closing.set()
        self._thread.join(timeout)
        self._stop.set()
        self._thread = None

    def flush(self) -> None:
        """Writes everything queued so far, in this thread (tests and shutdown without a
        writer thread)."""
        batch: list[RequestLogEntry] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is not None:
                batch.append(item)
        write_entries(self.engine, batch)
        self.written += len(batch)

    def wait_written(self, timeout: float = 30.0) -> None:
        """Returns once the writer thread has dealt with (written, or given up on) every
        entry queued before the call; raises ``TimeoutError`` after ``timeout`` seconds."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                if not self._queue.all_tasks_done.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("request log writer did not catch up")

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            taken = 1
            if first is None:
                closing = True
                batch: list[RequestLogEntry] = []
            else:
                batch = [first]
            if not closing and self._linger > 0:
                self._closing.wait(self._linger)
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if item is None:
                    closing = True
                    break
                batch.append(item)
            try:
                self._write(batch, give_up=closing)
            finally:
                for _ in range(taken):  # what wait_written waits on
                    self._queue.task_done()

    def _write(self, batch: list[RequestLogEntry], *, give_up: bool) -> None:
        while batch:
            try:
                write_entries(self.engine, batch)
                self.written += len(batch)
                return
            except (OperationalError, InterfaceError, SqlTimeout):
                if give_up:  # shutting down with the database away: say so, once
                    log.warning("request log: %d entries not written (database unavailable)", len(batch))
                    self.dropped += len(batch)
                    return
                log.warning("request log: database unavailable, retrying", exc_info=False)
                if self._stop.wait(self._retry):
                    return
            except Exception:
                # Not the database being away but a row it refuses: keep the others.
                for entry in batch:
                    try:
                        write_entries(self.engine, [entry])
                        self.written += 1
                    except Exception:
                        log.warning("request log: an entry was refused by the database", exc_info=False)
                        self.dropped += 1
                return
