"""The writer threads' batches on PostgreSQL (ledger, request log), in psycopg's own terms.

``write_records`` runs on the ledger writer thread of the serving process, so whatever it
costs in Python is taken from the event loop (the GIL). Through SQLAlchemy Core a batch of
N rows was one multi-row INSERT with ~25 × N placeholders ("insertmanyvalues"), which
psycopg re-parses on every batch (its statement cache stops at 50 placeholders), plus an
expanding ``IN`` per batch: ~15 % of the gateway's samples on /v1/chat/completions
(bench/README.md, "Levers"). Here every statement has a fixed text and a fixed number of
parameters — a batch travels as one JSON parameter (written by orjson, read by
``json_to_recordset``) — so psycopg parses each statement once and prepares it on the
server after a few uses. (One array per column, spread by ``unnest``, cost twice the CPU:
psycopg's array dumpers are Python.)

The statements do what SQLAlchemy's did, in the same order and in the caller's transaction
(the raw connection under SQLAlchemy's ``Connection``): ``write_records`` keeps every rule.
Errors come out as SQLAlchemy's (``DBAPIError.instance``), so the writer's handling — spool
when the database is away, set aside what it refuses — is unchanged.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from domain.adapters.sql.repositories import delta_params

# spend_ledger's columns as ``ledger._spend_row`` names them, with the type each is read
# as from the batch's JSON (then assigned to its column's own type).
SPEND_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "text"), ("created_at", "timestamptz"), ("client_key_id", "text"), ("conversation_id", "int8"),
    ("response_id", "text"), ("route", "text"), ("model", "text"), ("key_source", "text"),
    ("fallback_reason", "text"), ("outcome", "text"), ("error_code", "text"), ("input_tokens", "int8"),
    ("cached_input_tokens", "int8"), ("output_tokens", "int8"), ("reasoning_tokens", "int8"),
    ("cost_nanos", "int8"), ("charged_nanos", "int8"), ("priced", "bool"), ("estimated", "bool"),
    ("catalog_version", "text"), ("latency_ms", "int8"), ("upstream", "text"), ("upstream_attempts", "int8"),
    ("pii_counts", "text"), ("anomalies", "text"))


def rows_of(columns: Sequence[tuple[str, str]]) -> str:
    """The batch's rows, from its one JSON parameter (an array of objects)."""
    return f"json_to_recordset(%s::json) AS r({', '.join(f'{name} {kind}' for name, kind in columns)})"


def json_batch(rows: Sequence[Mapping[str, Any]]) -> str:
    """A batch as one parameter. orjson (C) in place of psycopg's per-array dumpers (Python):
    the values are plain (text already cleaned of NUL and lone surrogates, integers within
    64 bits, aware datetimes written with their offset and microseconds)."""
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError as exc:  # the writer sets such a record aside (``_store``)
        raise ValueError(f"ledger batch not encodable: {exc}") from exc


_SPEND_NAMES = ", ".join(name for name, _ in SPEND_COLUMNS)
_INSERT_SPEND = (f"INSERT INTO spend_ledger ({_SPEND_NAMES}) SELECT {_SPEND_NAMES} FROM {rows_of(SPEND_COLUMNS)} "
                 "ON CONFLICT (request_id) DO NOTHING RETURNING request_id")
_KEYS = (("owner", "text"), ("external_id", "text"))
# Created in (owner, external id) order, so two writers never wait on each other crosswise.
_CREATE_CONVERSATIONS = (
    "INSERT INTO conversations (owner, external_id, turn_count, created_at, updated_at) "
    f"SELECT owner, external_id, 0, at, at FROM {rows_of((*_KEYS, ('at', 'timestamptz')))} "
    "ORDER BY owner, external_id ON CONFLICT DO NOTHING")
_FIND_CONVERSATIONS = (f"SELECT c.id, c.owner, c.external_id FROM conversations c JOIN {rows_of(_KEYS)} "
                       "ON c.owner = r.owner AND c.external_id = r.external_id")
_CLOSE_RESERVATIONS = "DELETE FROM budget_reservations WHERE id = ANY(%s::text[]) RETURNING id"
_COUNT_TURN = "UPDATE conversations SET turn_count = turn_count + 1, updated_at = %s WHERE id = %s RETURNING turn_count"
TURN_COLUMNS = ("conversation_id", "turn_index", "request_id", "created_at", "system_prompt", "prompt", "reply",
                "model")
_INSERT_TURN = f"INSERT INTO turns ({', '.join(TURN_COLUMNS)}) VALUES ({', '.join(['%s'] * len(TURN_COLUMNS))})"
# The counters locked in (scope, period) order, as the budget hold locks them.
_APPLY_DELTAS = (
    "INSERT INTO budget_counters (scope, period, spent_nanos, reserved_nanos) "
    f"SELECT scope, period, spent, held FROM {rows_of((('scope', 'text'), ('period', 'text'), ('spent', 'int8'), ('held', 'int8')))} "
    "ORDER BY scope, period ON CONFLICT (scope, period) DO UPDATE SET "
    "reserved_nanos = budget_counters.reserved_nanos + excluded.reserved_nanos, "
    "spent_nanos = budget_counters.spent_nanos + excluded.spent_nanos")
REQUEST_LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "text"), ("created_at", "timestamptz"), ("route", "text"), ("status", "int8"),
    ("error_code", "text"), ("client_key_id", "text"), ("model", "text"), ("key_source", "text"),
    ("fallback_reason", "text"), ("upstream", "text"), ("latency_ms", "int8"), ("ttft_ms", "int8"),
    ("cost_nanos", "int8"), ("pii_counts", "text"))
_LOG_NAMES = ", ".join(name for name, _ in REQUEST_LOG_COLUMNS)
_INSERT_REQUEST_LOG = f"INSERT INTO request_log ({_LOG_NAMES}) SELECT {_LOG_NAMES} FROM {rows_of(REQUEST_LOG_COLUMNS)}"


@contextmanager
def _raw_cursor(conn: Connection, statement: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor on the psycopg connection under ``conn`` (in its transaction); psycopg's
    errors come out as SQLAlchemy's."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with raw.cursor() as cur:
            yield cur
    except psycopg.Error as exc:
        # (A connection the server closed is then dropped by SQLAlchemy's rollback.)
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def uses_psycopg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def insert_request_log(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Request-log rows (``request_log._row``) in one statement."""
    with _raw_cursor(conn, _INSERT_REQUEST_LOG) as cur:
        cur.execute(_INSERT_REQUEST_LOG, (json_batch(rows),))


class PgLedgerStatements:
    """The ledger batch's five kinds of statement on one psycopg connection, inside the
    transaction its SQLAlchemy ``Connection`` began."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _cursor(self, statement: str) -> AbstractContextManager[psycopg.Cursor[Any]]:
        return _raw_cursor(self._conn, statement)

    def conversations(self, named: Mapping[tuple[str, str], datetime]) -> dict[tuple[str, str], int]:
        """Creates the conversations that do not exist yet; the id of each."""
        keys = json_batch([{"owner": o, "external_id": e, "at": at} for (o, e), at in named.items()])
        with self._cursor(_CREATE_CONVERSATIONS) as cur:
            cur.execute(_CREATE_CONVERSATIONS, (keys,))
            cur.execute(_FIND_CONVERSATIONS, (keys,))
            return {(owner, ext): pk for pk, owner, ext in cur.fetchall()}

    def insert_spend(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """The rows whose request id was not in the ledger yet; their request ids."""
        with self._cursor(_INSERT_SPEND) as cur:
            cur.execute(_INSERT_SPEND, (json_batch(rows),))
            return {r[0] for r in cur.fetchall()}

    def close_reservations(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self._cursor(_CLOSE_RESERVATIONS) as cur:
            cur.execute(_CLOSE_RESERVATIONS, (list(ids),))
            return {r[0] for r in cur.fetchall()}

    def add_turn(self, conversation_pk: int, at: datetime, turn: Mapping[str, Any]) -> int:
        """Counts the turn on its conversation (the row lock orders racing turns) and stores
        it under the new index."""
        with self._cursor(_COUNT_TURN) as cur:
            cur.execute(_COUNT_TURN, (at, conversation_pk))
            row = cur.fetchone()
            assert row is not None
            index = int(row[0])
            cur.execute(_INSERT_TURN, [conversation_pk, index, *(turn[name] for name in TURN_COLUMNS[2:])])
            return index

    def apply_deltas(self, deltas: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Adds (held, spent) nano-USD to each counter, in ``delta_params``' order."""
        params = delta_params(deltas)
        if params:
            with self._cursor(_APPLY_DELTAS) as cur:
                cur.execute(_APPLY_DELTAS, (json_batch(params),))
