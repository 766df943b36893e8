"""SQL implementations of the repository ports.

The ports are async; SQLAlchemy's sync engine runs in a small dedicated thread pool so that
the same code serves PostgreSQL and SQLite and the event loop never blocks on a query.
"""
from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Select,
    TextClause,
    bindparam,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeout
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, col

from domain.adapters.sql.tables import (
    BudgetCounterRow,
    BudgetReservationRow,
    ClientKeyRow,
    ConversationRow,
    TurnRow,
    table_of,
)
from domain.budgets import BudgetLine, HoldTag, Reservation, budget_exceeded
from domain.client_keys import BudgetLimits, ClientKey
from domain.conversations import Turn
from domain.errors import ServiceUnavailable
from domain.money import Money
from domain.pii import PiiPolicy

T = TypeVar("T")


class SqlBase:
    def __init__(self, engine: Engine, executor: ThreadPoolExecutor | None = None) -> None:
        self.engine = engine
        self._executor = executor

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Runs a query off the event loop. A database that is down or saturated is a 503
        with Retry-After (server-key traffic fails closed), never a 500."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (OperationalError, SqlTimeout, InterfaceError) as exc:
            raise database_unavailable() from exc


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("database_unavailable", retry_after=5)


def upsert_ignore(engine: Engine) -> Callable[[type[SQLModel]], PgInsert | SqliteInsert]:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect."""
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


def _money(nanos: int | None) -> Money | None:
    return None if nanos is None else Money(nanos)


def _key_from_row(row: ClientKeyRow) -> ClientKey:
    return ClientKey(id=row.id, short_id=row.short_id, name=row.name, key_hash=row.key_hash,
                     created_at=row.created_at,
                     limits=BudgetLimits(_money(row.daily_limit_nanos), _money(row.monthly_limit_nanos)),
                     may_use_server_key=row.may_use_server_key, revoked_at=row.revoked_at,
                     pii_policy=PiiPolicy(row.pii_policy) if row.pii_policy else None,
                     expires_at=row.expires_at.replace(tzinfo=UTC) if row.expires_at and row.expires_at.tzinfo is None
                     else row.expires_at, budget_key_id=row.budget_key_id)


class SqlClientKeyRepository(SqlBase):
    async def add(self, key: ClientKey) -> None:
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.add(ClientKeyRow(id=key.id, short_id=key.short_id, name=key.name, key_hash=key.key_hash,
                                   daily_limit_nanos=key.limits.daily.nanos if key.limits.daily else None,
                                   monthly_limit_nanos=key.limits.monthly.nanos if key.limits.monthly else None,
                                   may_use_server_key=key.may_use_server_key, created_at=key.created_at,
                                   revoked_at=key.revoked_at,
                                   pii_policy=key.pii_policy.value if key.pii_policy else None,
                                   expires_at=key.expires_at, budget_key_id=key.budget_key_id))
        await self._run(run)

    def _one(self, clause: ColumnElement[bool]) -> ClientKey | None:
        with Session(self.engine) as s:
            row = s.execute(select(ClientKeyRow).where(clause)).scalar_one_or_none()
            return _key_from_row(row) if row else None

    async def by_hash(self, key_hash: str) -> ClientKey | None:
        return await self._run(self._one, col(ClientKeyRow.key_hash) == key_hash)

    async def get(self, key_id: str) -> ClientKey | None:
        return await self._run(self._one, col(ClientKeyRow.id) == key_id)

    async def list(self) -> Sequence[ClientKey]:
        def run() -> list[ClientKey]:
            with Session(self.engine) as s:
                rows = s.execute(select(ClientKeyRow).order_by(col(ClientKeyRow.created_at))).scalars()
                return [_key_from_row(r) for r in rows]
        return await self._run(run)

    def _update(self, key_id: str, **values: object) -> bool:
        with Session(self.engine) as s, s.begin():
            result = s.execute(update(ClientKeyRow).where(col(ClientKeyRow.id) == key_id).values(**values))
            return isinstance(result, CursorResult) and result.rowcount > 0

    async def revoke(self, key_id: str, at: datetime) -> bool:
        return await self._run(lambda: self._update(key_id, revoked_at=at))

    async def set_limits(self, key_id: str, limits: BudgetLimits) -> bool:
        return await self._run(lambda: self._update(
            key_id, daily_limit_nanos=limits.daily.nanos if limits.daily else None,
            monthly_limit_nanos=limits.monthly.nanos if limits.monthly else None))

    async def set_pii_policy(self, key_id: str, policy: PiiPolicy | None) -> bool:
        return await self._run(lambda: self._update(key_id, pii_policy=policy.value if policy else None))

    async def set_expiry(self, key_id: str, expires_at: datetime | None) -> bool:
        return await self._run(lambda: self._update(key_id, expires_at=expires_at))


class SqlConversationRepository(SqlBase):
    async def recent_turns(self, owner: str | None, conversation_id: str, limit: int) -> Sequence[Turn]:
        # Plain rows, not ORM entities: this runs on every turn of a named conversation.
        statement = _recent_turns_statement(limit)

        def run() -> list[Turn]:
            with self.engine.connect() as conn:
                rows = conn.execute(statement, {"owner": owner or "", "external_id": conversation_id}).all()
            return [Turn(conversation_id, owner, request_id, created_at, system_prompt, prompt, reply, model, index)
                    for request_id, created_at, system_prompt, prompt, reply, model, index in reversed(rows)]
        return await self._run(run)


@functools.cache
def _recent_turns_statement(limit: int) -> Select[Any]:
    """The newest ``limit`` turns of one conversation, read as a range of the (conversation,
    turn index) index: a conversation's turns are numbered 1..``turn_count`` (the ledger
    numbers them in the transaction that counts them), so the newest are those above
    ``turn_count - limit``. Asked only for the newest by ORDER BY and LIMIT, PostgreSQL read
    and sorted every stored turn of the conversation on every turn: a cost that grew with
    the conversation (bench/README.md, "Levers")."""
    turns, conversations = table_of(TurnRow), table_of(ConversationRow)
    t, c = turns.c, conversations.c
    return (select(t.request_id, t.created_at, t.system_prompt, t.prompt, t.reply, t.model, t.turn_index)
            .join_from(turns, conversations, (t.conversation_id == c.id) & (t.turn_index > c.turn_count - limit))
            .where(c.owner == bindparam("owner"), c.external_id == bindparam("external_id"))
            .order_by(t.turn_index.desc()).limit(limit))


def _encode_lines(lines: Sequence[BudgetLine]) -> str:
    return ";".join(f"{line.scope}|{line.period}" for line in lines)


class SqlBudgetStore(SqlBase):
    """A reservation is one conditional UPDATE over the capped lines — each row is raised
    only if ``spent + reserved + amount <= cap`` — plus the reservation row, in one
    transaction. Row locks (PostgreSQL) or the database write lock (SQLite, BEGIN
    IMMEDIATE) serialise racing replicas, so concurrent requests can never overspend by more
    than one request's worst case (the gap between a reservation and a larger actual cost).

    Give it an engine with ``synchronous_commit`` off: a hold lost in a crash only loosens
    the budget until the ledger row (written durably) counts the real charge."""

    async def reserve(self, lines: Sequence[BudgetLine], amount: Money, tag: HoldTag | None = None) -> Reservation:
        reservation = Reservation(uuid.uuid4().hex, tuple(lines), amount)
        params: dict[str, object] = {"amount": amount.nanos, "id": reservation.id, "lines": _encode_lines(lines),
                                     "at": _now(), "rq": tag.request_id if tag else None,
                                     "ck": tag.client_key_id if tag else None, "rt": tag.route if tag else None,
                                     "md": tag.model if tag else None, "cv": tag.catalog_version if tag else None,
                                     "ks": tag.key_source.value if tag else None}
        if not lines:
            await self._hold_only(params)
            return reservation
        for i, line in enumerate(lines):
            params.update({f"s{i}": line.scope, f"p{i}": line.period,
                           f"l{i}": line.limit.nanos if line.limit is not None else 2**62})
        for attempt in (1, 2):
            try:
                room = await self._room(len(lines), params)
            except ServiceUnavailable:
                self._down_until = time.monotonic() + 5.0
                raise
            if all(room.get((ln.scope, ln.period)) for ln in lines):
                return reservation
            missing = [(ln.scope, ln.period) for ln in lines if (ln.scope, ln.period) not in room]
            if not missing or attempt == 2:
                break
            await self._run(ensure_counters, self.engine, missing)  # the first request of a day or month
        raise budget_exceeded(next(ln for ln in lines if not room.get((ln.scope, ln.period))))

    async def _room(self, n: int, params: dict[str, object]) -> dict[tuple[str, str], bool]:
        return await self._run(self._try_reserve, n, params)

    _down_until = 0.0

    async def _hold_only(self, params: dict[str, object]) -> None:
        """A hold on no counter (the request's write-ahead record only). After a failure,
        such holds are not tried for a few seconds: the caller goes on without one, and
        requests that need no budget are not slowed by a database that is away."""
        if time.monotonic() < self._down_until:
            raise database_unavailable()
        try:
            await self._insert_hold(params)
        except ServiceUnavailable:
            self._down_until = time.monotonic() + 5.0
            raise

    async def _insert_hold(self, params: dict[str, object]) -> None:
        def run() -> None:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_RESERVATION, params)
        await self._run(run)

    async def open(self) -> None:
        """Nothing to open: the engine connects lazily (see PsycopgBudgetStore)."""

    async def aclose(self) -> None:
        self.engine.dispose()

    def _try_reserve(self, n: int, params: dict[str, object]) -> dict[tuple[str, str], bool]:
        """{(scope, period): has room} for the counter rows that exist; the hold and the
        reservation row are written only if every line has room."""
        if self.engine.dialect.name == "postgresql":
            # One statement, autocommit: a single round trip takes the hold.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return {(sc, p): ok for sc, p, ok in conn.execute(_pg_reserve_statement(n), params)}
        with self.engine.connect() as conn, conn.begin() as tx:  # SQLite: BEGIN IMMEDIATE serialises writers
            rows = {(sc, p): ok for sc, p, ok in conn.execute(_sqlite_room_statement(n), params)}
            if len(rows) == n and all(rows.values()):
                conn.execute(_sqlite_hold_statement(n), params)
                conn.execute(_INSERT_RESERVATION, params)
            else:
                tx.rollback()
            return {key: bool(ok) for key, ok in rows.items()}

    async def settle(self, reservation: Reservation, actual: Money) -> None:
        """Releases the hold and counts ``actual`` on the reservation's own lines (the ledger
        settles its records itself, see ``ledger.write_records``)."""
        def run() -> None:
            with self.engine.begin() as conn:
                if close_reservations(conn, [reservation.id]):
                    apply_deltas(conn, {(ln.scope, ln.period): (-reservation.amount.nanos, actual.nanos)
                                        for ln in reservation.lines})
        await self._run(run)

    async def release(self, reservation: Reservation) -> None:
        await self.settle(reservation, Money.zero())

    async def spent(self, scope: str, period: str) -> Money:
        def run() -> Money:
            with Session(self.engine) as s:
                row = s.get(BudgetCounterRow, (scope, period))
                return Money(row.spent_nanos if row else 0)
        return await self._run(run)

# A hold carries its request (see HoldTag): it is the request's write-ahead record.
_HOLD_COLUMNS = ("id, lines, amount_nanos, created_at, request_id, client_key_id, route, model, catalog_version, "
                 "key_source")
_HOLD_VALUES = ":id, :lines, :amount, :at, :rq, :ck, :rt, :md, :cv, :ks"


def _match(n: int) -> str:
    return " OR ".join(f"(scope = :s{i} AND period = :p{i})" for i in range(n))


def _has_room(n: int, alias: str) -> str:
    cap = " ".join(f"WHEN {alias}.scope = :s{i} AND {alias}.period = :p{i} THEN :l{i}" for i in range(n))
    return f"{alias}.spent_nanos + {alias}.reserved_nanos + :amount <= CASE {cap} END"


@functools.cache
def _pg_reserve_statement(n: int) -> TextClause:
    """Locks the lines' rows in (scope, period) order — so two reservations never wait on
    each other crosswise — then, only if every line has room, raises them and records the
    reservation; answers each existing line with whether it had room."""
    return text(
        f"WITH locked AS (SELECT scope, period, spent_nanos, reserved_nanos FROM budget_counters "
        f"WHERE {_match(n)} ORDER BY scope, period FOR UPDATE), "
        f"verdict AS (SELECT count(*) = {n} AND bool_and({_has_room(n, 'l')}) AS fits FROM locked l), "
        f"hold AS (UPDATE budget_counters AS b SET reserved_nanos = b.reserved_nanos + :amount "
        f"FROM locked l, verdict v WHERE v.fits AND b.scope = l.scope AND b.period = l.period RETURNING b.scope), "
        f"saved AS (INSERT INTO budget_reservations ({_HOLD_COLUMNS}) "
        f"SELECT {_HOLD_VALUES} FROM verdict WHERE fits RETURNING id) "
        f"SELECT l.scope, l.period, {_has_room(n, 'l')} FROM locked l")


@functools.cache
def _sqlite_room_statement(n: int) -> TextClause:
    return text(f"SELECT b.scope, b.period, {_has_room(n, 'b')} FROM budget_counters AS b WHERE {_match(n)}")


@functools.cache
def _sqlite_hold_statement(n: int) -> TextClause:
    return text(f"UPDATE budget_counters SET reserved_nanos = reserved_nanos + :amount WHERE {_match(n)}")


_INSERT_RESERVATION = text(f"INSERT INTO budget_reservations ({_HOLD_COLUMNS}) VALUES ({_HOLD_VALUES})")
# An upsert, so a counter row that does not exist yet (a new day) is created on the way.
_APPLY_DELTA = text("INSERT INTO budget_counters (scope, period, spent_nanos, reserved_nanos) "
                    "VALUES (:scope, :period, :spent, :held) ON CONFLICT (scope, period) DO UPDATE SET "
                    "reserved_nanos = budget_counters.reserved_nanos + excluded.reserved_nanos, "
                    "spent_nanos = budget_counters.spent_nanos + excluded.spent_nanos")


def ensure_counters(engine: Engine, keys: Sequence[tuple[str, str]]) -> None:
    """Creates missing counter rows (in their own short transaction, so the hot update never
    needs an upsert)."""
    if keys:
        with engine.begin() as conn:
            conn.execute(upsert_ignore(engine)(BudgetCounterRow).values(
                [{"scope": sc, "period": p} for sc, p in sorted(set(keys))]).on_conflict_do_nothing())


def close_reservations(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Deletes the reservation rows still open among ``ids``; the deletion is the proof a
    hold is released exactly once."""
    if not ids:
        return set()
    rows = conn.execute(delete(BudgetReservationRow).where(col(BudgetReservationRow.id).in_(ids))
                        .returning(col(BudgetReservationRow.id)))
    return {r[0] for r in rows}


def delta_params(deltas: dict[tuple[str, str], tuple[int, int]]) -> list[dict[str, Any]]:
    """The counters' changes in a fixed order, so that two writers never lock the same rows
    in opposite orders; counters that do not change are left out."""
    return [{"scope": sc, "period": p, "held": held, "spent": spent}
            for (sc, p), (held, spent) in sorted(deltas.items()) if held or spent]


def apply_deltas(conn: Connection, deltas: dict[tuple[str, str], tuple[int, int]]) -> None:
    """Adds (held, spent) nano-USD to each counter (in ``delta_params``' order)."""
    params = delta_params(deltas)
    if params:
        conn.execute(_APPLY_DELTA, params)


def _now() -> datetime:
    return datetime.now(UTC)
