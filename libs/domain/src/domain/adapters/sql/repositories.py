"""SQL implementations of the repository ports.

The ports are async; SQLAlchemy's sync engine runs in a small dedicated thread pool so that
the same code serves PostgreSQL and SQLite and the event loop never blocks on a query.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine, and_, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeout
from sqlalchemy.orm import Session

from domain.adapters.sql.tables import BudgetCounterRow, BudgetReservationRow, ClientKeyRow, ConversationRow, TurnRow
from domain.budgets import BudgetLine, Reservation, budget_exceeded
from domain.client_keys import BudgetLimits, ClientKey
from domain.conversations import Turn
from domain.errors import ServiceUnavailable
from domain.money import Money

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
            raise ServiceUnavailable("database_unavailable", "데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
                                     "The database is unavailable; try again shortly.", retry_after=5) from exc


def upsert_ignore(engine: Engine):  # type: ignore[no-untyped-def]
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect."""
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


def _money(nanos: int | None) -> Money | None:
    return None if nanos is None else Money(nanos)


def _key_from_row(row: ClientKeyRow) -> ClientKey:
    return ClientKey(id=row.id, short_id=row.short_id, name=row.name, key_hash=row.key_hash,
                     created_at=row.created_at,
                     limits=BudgetLimits(_money(row.daily_limit_nanos), _money(row.monthly_limit_nanos)),
                     may_use_server_key=row.may_use_server_key, revoked_at=row.revoked_at)


class SqlClientKeyRepository(SqlBase):
    async def add(self, key: ClientKey) -> None:
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.add(ClientKeyRow(id=key.id, short_id=key.short_id, name=key.name, key_hash=key.key_hash,
                                   daily_limit_nanos=key.limits.daily.nanos if key.limits.daily else None,
                                   monthly_limit_nanos=key.limits.monthly.nanos if key.limits.monthly else None,
                                   may_use_server_key=key.may_use_server_key, created_at=key.created_at,
                                   revoked_at=key.revoked_at))
        await self._run(run)

    def _one(self, clause: object) -> ClientKey | None:
        with Session(self.engine) as s:
            row = s.execute(select(ClientKeyRow).where(clause)).scalar_one_or_none()  # type: ignore[arg-type]
            return _key_from_row(row) if row else None

    async def by_hash(self, key_hash: str) -> ClientKey | None:
        return await self._run(self._one, ClientKeyRow.key_hash == key_hash)

    async def get(self, key_id: str) -> ClientKey | None:
        return await self._run(self._one, ClientKeyRow.id == key_id)

    async def list(self) -> Sequence[ClientKey]:
        def run() -> list[ClientKey]:
            with Session(self.engine) as s:
                rows = s.execute(select(ClientKeyRow).order_by(ClientKeyRow.created_at)).scalars()
                return [_key_from_row(r) for r in rows]
        return await self._run(run)

    def _update(self, key_id: str, **values: object) -> bool:
        with Session(self.engine) as s, s.begin():
            result = s.execute(update(ClientKeyRow).where(ClientKeyRow.id == key_id).values(**values))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        return await self._run(lambda: self._update(key_id, revoked_at=at))

    async def set_limits(self, key_id: str, limits: BudgetLimits) -> bool:
        return await self._run(lambda: self._update(
            key_id, daily_limit_nanos=limits.daily.nanos if limits.daily else None,
            monthly_limit_nanos=limits.monthly.nanos if limits.monthly else None))


class SqlConversationRepository(SqlBase):
    async def recent_turns(self, owner: str | None, conversation_id: str, limit: int) -> Sequence[Turn]:
        def run() -> list[Turn]:
            with Session(self.engine) as s:
                rows = s.execute(
                    select(TurnRow).join(ConversationRow, TurnRow.conversation_id == ConversationRow.id)  # type: ignore[arg-type]
                    .where(ConversationRow.owner == (owner or ""), ConversationRow.external_id == conversation_id)
                    .order_by(TurnRow.turn_index.desc()).limit(limit)  # type: ignore[attr-defined]
                ).scalars().all()
                return [Turn(conversation_id, owner, r.request_id, r.created_at, r.system_prompt, r.prompt, r.reply,
                             r.model, r.turn_index) for r in reversed(rows)]
        return await self._run(run)


def _encode_lines(lines: Sequence[BudgetLine]) -> str:
    return ";".join(f"{line.scope}|{line.period}" for line in lines)


class SqlBudgetStore(SqlBase):
    """Reservation is one transaction of conditional UPDATEs: each capped line is raised only
    if ``spent + reserved + amount <= cap``; a row lock (PostgreSQL) or the database write
    lock (SQLite, BEGIN IMMEDIATE) serialises racing replicas, so concurrent requests can
    never overspend by more than one request's worst case (the gap between a reservation
    and a larger actual cost)."""

    def _reserve(self, lines: Sequence[BudgetLine], amount: Money) -> Reservation:
        reservation = Reservation(uuid.uuid4().hex, tuple(lines), amount)
        ins = upsert_ignore(self.engine)
        with Session(self.engine) as s, s.begin():
            s.execute(ins(BudgetCounterRow).values([{"scope": ln.scope, "period": ln.period} for ln in lines])
                      .on_conflict_do_nothing())
            for line in lines:
                cond = and_(BudgetCounterRow.scope == line.scope, BudgetCounterRow.period == line.period)
                if line.limit is not None:
                    cond = and_(cond, BudgetCounterRow.spent_nanos + BudgetCounterRow.reserved_nanos + amount.nanos
                                <= line.limit.nanos)
                done = s.execute(update(BudgetCounterRow).where(cond)
                                 .values(reserved_nanos=BudgetCounterRow.reserved_nanos + amount.nanos))
                if not done.rowcount:  # type: ignore[attr-defined]
                    s.rollback()
                    raise budget_exceeded(line)
            s.execute(insert(BudgetReservationRow).values(id=reservation.id, lines=_encode_lines(lines),
                                                          amount_nanos=amount.nanos, created_at=_now()))
        return reservation

    async def reserve(self, lines: Sequence[BudgetLine], amount: Money) -> Reservation:
        return await self._run(self._reserve, lines, amount)

    async def settle(self, reservation: Reservation, actual: Money) -> None:
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                settle_in(s, reservation, actual)
        await self._run(run)

    async def release(self, reservation: Reservation) -> None:
        await self.settle(reservation, Money.zero())

    async def spent(self, scope: str, period: str) -> Money:
        def run() -> Money:
            with Session(self.engine) as s:
                row = s.get(BudgetCounterRow, (scope, period))
                return Money(row.spent_nanos if row else 0)
        return await self._run(run)

    def release_stale(self, older_than: datetime) -> int:
        """Holds left by a replica that died between reserving and settling."""
        with Session(self.engine) as s, s.begin():
            rows = s.execute(select(BudgetReservationRow).where(BudgetReservationRow.created_at < older_than)
                             .with_for_update(skip_locked=True)).scalars().all()
            for row in rows:
                lines = tuple(BudgetLine(*part.split("|", 1), None) for part in row.lines.split(";"))
                settle_in(s, Reservation(row.id, lines, Money(row.amount_nanos)), Money.zero())
            return len(rows)


def settle_in(s: Session, reservation: Reservation, actual: Money) -> None:
    """Moves a reservation's hold to spent (``actual``), once: the reservation row is the
    proof that the hold is still open."""
    gone = s.execute(text("DELETE FROM budget_reservations WHERE id = :id"), {"id": reservation.id})
    if not gone.rowcount:  # type: ignore[attr-defined]
        return
    for line in reservation.lines:
        s.execute(update(BudgetCounterRow)
                  .where(BudgetCounterRow.scope == line.scope, BudgetCounterRow.period == line.period)
                  .values(reserved_nanos=BudgetCounterRow.reserved_nanos - reservation.amount.nanos,
                          spent_nanos=BudgetCounterRow.spent_nanos + actual.nanos))


def _now() -> datetime:
    from datetime import UTC
    return datetime.now(UTC)
