"""Budget holds on PostgreSQL taken from the event loop, with psycopg's async pool.

The hold is the one database round trip on the request path of a budgeted key; run through
the sync engine it also costs a thread hop each way. The statement, and everything else
(settling, sweeping, counters), is SqlBudgetStore's.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from domain.adapters.sql.repositories import (
    _INSERT_RESERVATION,
    SqlBudgetStore,
    _pg_reserve_statement,
    database_unavailable,
)


@functools.cache
def _psycopg_sql(n: int) -> str:
    """The shared statement in psycopg's own placeholder style."""
    return str(_pg_reserve_statement(n).compile(dialect=psycopg_dialect.dialect()))


@functools.cache
def _psycopg_hold_sql() -> str:
    return str(_INSERT_RESERVATION.compile(dialect=psycopg_dialect.dialect()))


class PsycopgBudgetStore(SqlBudgetStore):
    def __init__(self, engine: Engine, executor: ThreadPoolExecutor | None = None, *, max_size: int = 10,
                 timeout: float = 5.0) -> None:
        super().__init__(engine, executor)
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        # autocommit: the statement is its own transaction; synchronous_commit off: a hold
        # lost in a crash only loosens the budget until the ledger row counts the charge.
        self._pool = AsyncConnectionPool(conninfo, min_size=1, max_size=max_size, timeout=timeout, open=False,
                                         kwargs={"autocommit": True, "options": "-c synchronous_commit=off"})

    @property
    def pool(self) -> AsyncConnectionPool:
        """Its connections, for other reads on the request path (PsycopgConversationRepository)."""
        return self._pool

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def aclose(self) -> None:
        await self._pool.close()
        await super().aclose()

    async def _room(self, n: int, params: dict[str, object]) -> dict[tuple[str, str], bool]:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_psycopg_sql(n), params)
                return {(scope, period): ok for scope, period, ok in await cursor.fetchall()}
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise database_unavailable() from exc

    async def _insert_hold(self, params: dict[str, object]) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(_psycopg_hold_sql(), params)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise database_unavailable() from exc
