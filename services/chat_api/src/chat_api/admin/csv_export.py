"""The admin API's CSV exports (``/spend/ledger.csv``, ``/requests.csv``): rows read in
batches by ``domain.adapters.sql.read_models.exports``, written here as CSV text chunks.

Times in UTC and in the budget time zone, key names beside ids, USD and KRW as plain
numbers, caller-supplied text neutralised (``csv_cell``)."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from chat_api.admin.money_text import krw_formatter, usd_8
from domain.adapters.sql.read_models.exports import Cursor, ExportBatch, ledger_batches, request_log_batches
from domain.adapters.sql.read_models.request_log import RequestFilter
from domain.adapters.sql.read_models.shared import LedgerFilter, utc
from domain.periods import KST

LEDGER_CSV_COLUMNS = (
    "created_at_local", "created_at", "request_id", "client_key_id", "client_key_name", "conversation_id", "route",
    "model", "key_source", "fallback_reason", "outcome", "error_code", "input_tokens", "cached_input_tokens",
    "output_tokens", "reasoning_tokens", "cost_usd", "cost_krw", "charged_usd", "priced", "estimated",
    "catalog_version", "latency_ms", "row_id",
)
REQUESTS_CSV_COLUMNS = (
    "created_at_local", "created_at", "request_id", "route", "status", "error_code", "client_key_id",
    "client_key_name", "model", "key_source", "fallback_reason", "upstream", "latency_ms", "cost_usd", "cost_krw",
    "ttft_ms", "pii_counts", "row_id",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = frozenset({"request_id", "client_key_id", "route", "model", "key_source", "fallback_reason",
                           "outcome", "error_code", "catalog_version", "upstream", "pii_counts"})
RowWriter = Callable[[Any, dict[str, tuple[str, str]]], list[Any]]


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet will not run: request ids, model names and key names come
    from callers and operators, and a leading '=', '+', '-', '@', tab or CR would make
    Excel or LibreOffice evaluate it as a formula (=HYPERLINK(...)). Numbers pass as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def ledger_csv(engine: Engine, flt: LedgerFilter, *, limit: int = 100_000, chunk_rows: int = 5_000,
               tz: tzinfo = KST, krw_rate: Decimal = Decimal(1400), after: Cursor | None = None) -> Iterator[str]:
    """The ledger rows under ``flt`` as CSV text chunks (header first, then one chunk per
    batch), newest first, at most ``limit`` rows, after ``after`` (a previous part's last
    row: its ``created_at`` and ``row_id``) when given."""
    plain = ("request_id", "client_key_id", "conversation_id", "route", "model", "key_source", "fallback_reason",
             "outcome", "error_code", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    tail = ("priced", "estimated", "catalog_version", "latency_ms")
    row_out = _row_writer(plain, _TEXT_COLUMNS, plain.index("client_key_id"), tz, krw_rate, True, tail)
    batches = ledger_batches(engine, flt, [*plain, "cost_nanos", "charged_nanos", *tail], limit=limit,
                             chunk_rows=chunk_rows, after=after)
    return _csv_chunks(batches, LEDGER_CSV_COLUMNS, row_out)


def requests_csv(engine: Engine, flt: RequestFilter, *, limit: int = 100_000, chunk_rows: int = 5_000,
                 tz: tzinfo = KST, krw_rate: Decimal = Decimal(1400), after: Cursor | None = None) -> Iterator[str]:
    """The request log under ``flt`` as CSV, newest first, like ``ledger_csv``."""
    plain = ("request_id", "route", "status", "error_code", "client_key_id", "model", "key_source",
             "fallback_reason", "upstream", "latency_ms")
    # pii_counts: the per-kind counts as the request log keeps them (JSON text, never values)
    tail = ("ttft_ms", "pii_counts")
    row_out = _row_writer(plain, _TEXT_COLUMNS, plain.index("client_key_id"), tz, krw_rate, False, tail)
    batches = request_log_batches(engine, flt, [*plain, "cost_nanos", *tail], limit=limit, chunk_rows=chunk_rows,
                                  after=after)
    return _csv_chunks(batches, REQUESTS_CSV_COLUMNS, row_out)


def _csv_chunks(batches: Iterator[ExportBatch], header: Sequence[str], row_out: RowWriter) -> Iterator[str]:
    buf = io.StringIO()
    # CRLF rows (what Excel writes), and a field holding a bare CR or LF is quoted.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    yield _drain(buf)
    for batch in batches:
        for r in batch.rows:
            writer.writerow(row_out(r, batch.key_names))
        yield _drain(buf)


def _local_text(value: datetime, tz: tzinfo) -> str:
    return utc(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _row_writer(plain: Sequence[str], text: frozenset[str], key_at: int, tz: tzinfo, krw_rate: Decimal,
                with_charged: bool, tail: Sequence[str]) -> RowWriter:
    """Formats one selected row (id, created_at, *plain, cost_nanos, [charged_nanos], *tail)
    by position: exports run this per row, so no per-row lookups by name. The row's id
    goes last (``row_id``): with ``created_at`` it says where the next part starts."""
    krw = krw_formatter(krw_rate)
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
        out.append(r[0])
        return out

    return row_out


def _drain(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text
