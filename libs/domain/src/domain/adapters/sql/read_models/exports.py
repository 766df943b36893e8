"""Rows for the CSV exports (ledger and request log), in keyset-paginated batches. Turning
them into CSV text is the rendering service's work (chat_api's admin CSV export)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.read_models.request_log import RequestFilter
from domain.adapters.sql.read_models.shared import REQUESTS, SPEND, LedgerFilter, key_names, utc

KEY_COLUMN = "client_key_id"
# Where a part of an export ended: the (created_at, id) of its last row. The next part is the
# rows after it in (created_at, id) descending order: rows sharing that created_at and an
# older id included, so no row is skipped or repeated at a part's boundary.
Cursor = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class ExportBatch:
    """One batch of rows, newest first. Each row is ``(id, created_at, *columns)`` in the
    order the columns were asked for (read by position: an export formats every row);
    ``key_names`` holds (short id, name) of the client keys the batch's rows name."""

    rows: Sequence[Any]
    key_names: dict[str, tuple[str, str]]


def ledger_batches(engine: Engine, flt: LedgerFilter, columns: Sequence[str], *, limit: int,
                   chunk_rows: int = 5_000, after: Cursor | None = None) -> Iterator[ExportBatch]:
    """Spend-ledger rows under ``flt``, newest first, at most ``limit``, after the cursor
    (a previous part's last row) when one is given; ``columns`` must include
    ``client_key_id`` (the key names are looked up from it)."""
    return _keyset_batches(engine, SPEND, columns, flt.conditions(), limit, chunk_rows, after)


def request_log_batches(engine: Engine, flt: RequestFilter, columns: Sequence[str], *, limit: int,
                        chunk_rows: int = 5_000, after: Cursor | None = None) -> Iterator[ExportBatch]:
    """Request-log entries under ``flt``, like ``ledger_batches``."""
    return _keyset_batches(engine, REQUESTS, columns, flt.conditions(), limit, chunk_rows, after)


def _keyset_batches(engine: Engine, table: Table, columns: Sequence[str], conds: list[ColumnElement[bool]],
                    limit: int, chunk_rows: int, after: Cursor | None) -> Iterator[ExportBatch]:
    """Keyset pagination on (created_at, id) descending: each batch is its own short query
    (no connection or cursor held between batches) and memory stays at one batch."""
    if KEY_COLUMN not in columns:
        raise ValueError(f"an export's columns must include {KEY_COLUMN}")
    c = table.c
    cols = [c[name] for name in columns]
    sent = 0
    if after is not None:
        after = (utc(after[0]), after[1])
    while sent < limit:
        q = select(c.id, c.created_at, *cols).where(*conds)
        if after is not None:
            q = q.where(or_(c.created_at < after[0], and_(c.created_at == after[0], c.id < after[1])))
        q = q.order_by(c.created_at.desc(), c.id.desc()).limit(min(chunk_rows, limit - sent))
        with engine.connect() as conn:
            rows = conn.execute(q).all()
            names = key_names(conn, [getattr(r, KEY_COLUMN) for r in rows if getattr(r, KEY_COLUMN)])
        if not rows:
            return
        yield ExportBatch(rows, names)
        sent += len(rows)
        after = (rows[-1].created_at, rows[-1].id)
        if len(rows) < chunk_rows:
            return
