"""A conversation's stored turns read from the event loop, with psycopg's async pool.

Replaying a named conversation reads its recent turns on every turn: through the sync
engine that is a thread hop each way and SQLAlchemy's result processing. Here it is one
prepared statement (psycopg prepares a statement it has run a few times) on the budget
store's pool. The statement is SqlConversationRepository's; writes stay there.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from domain.adapters.sql.repositories import SqlConversationRepository, _recent_turns_statement, database_unavailable
from domain.conversations import Turn


@functools.cache
def _psycopg_sql(limit: int) -> tuple[str, dict[str, object]]:
    """The statement in psycopg's placeholder style, and its bound values (the limit)."""
    compiled = _recent_turns_statement(limit).compile(dialect=psycopg_dialect.dialect())
    return str(compiled), dict(compiled.params)


class PsycopgConversationRepository(SqlConversationRepository):
    def __init__(self, engine: Engine, executor: ThreadPoolExecutor | None, pool: AsyncConnectionPool) -> None:
        super().__init__(engine, executor)
        self._pool = pool  # opened and closed by its owner (PsycopgBudgetStore)

    async def recent_turns(self, owner: str | None, conversation_id: str, limit: int) -> Sequence[Turn]:
        try:
            async with self._pool.connection() as conn:
                sql, bound = _psycopg_sql(limit)
                cursor = await conn.execute(sql, {**bound, "owner": owner or "", "external_id": conversation_id})
                rows = await cursor.fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise database_unavailable() from exc
        return [Turn(conversation_id, owner, request_id, created_at, system_prompt, prompt, reply, model, index)
                for request_id, created_at, system_prompt, prompt, reply, model, index in reversed(rows)]
