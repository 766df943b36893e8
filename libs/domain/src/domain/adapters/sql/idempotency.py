"""Idempotency keys: a retried request replays its stored answer instead of paying twice."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, CursorResult, Engine, delete, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.adapters.sql.repositories import SqlBase, upsert_ignore
from domain.adapters.sql.tables import IdempotencyRow
from domain.errors import Conflict


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    body: str


class SqlIdempotencyStore(SqlBase):
    """``begin`` claims (owner, key) atomically. The same key with another body is a conflict
    (422); while the first request is still running, a retry is told to wait (409). A claim
    still in progress after ``pending_seconds`` counts as failed (its replica died with it):
    the next retry takes it over, exactly one retry wins."""

    def __init__(self, engine: Engine, executor: ThreadPoolExecutor | None = None, *,
                 pending_seconds: float = 120.0) -> None:
        super().__init__(engine, executor)
        self._pending = timedelta(seconds=pending_seconds)

    async def begin(self, owner: str, key: str, body_hash: str, now: datetime) -> StoredAnswer | None:
        def run() -> StoredAnswer | None:
            with Session(self.engine) as s, s.begin():
                claimed = s.execute(upsert_ignore(self.engine)(IdempotencyRow).values(
                    owner=owner, key=key, body_hash=body_hash, created_at=now)
                    .on_conflict_do_nothing().returning(col(IdempotencyRow.key))).first()
                if claimed is not None:
                    return None
                row = s.execute(select(IdempotencyRow).where(col(IdempotencyRow.owner) == owner,
                                                             col(IdempotencyRow.key) == key)).scalar_one()
                if row.body_hash != body_hash:
                    raise Conflict("idempotency_key_reused", field="Idempotency-Key")
                if row.status_code is None and _aware(row.created_at) <= now - self._pending:
                    # Compare-and-set on the claim's time: of racing retries, one takes it over.
                    taken = s.execute(update(IdempotencyRow).where(
                        col(IdempotencyRow.owner) == owner, col(IdempotencyRow.key) == key,
                        col(IdempotencyRow.status_code).is_(None),
                        col(IdempotencyRow.created_at) == row.created_at).values(created_at=now))
                    if isinstance(taken, CursorResult) and taken.rowcount == 1:
                        return None
                if row.status_code is None:
                    raise Conflict("idempotency_in_progress", field="Idempotency-Key", retry_after=1)
                return StoredAnswer(row.status_code, row.response or "")
        return await self._run(run)

    @staticmethod
    def _mine(owner: str, key: str, claimed_at: datetime | None) -> list[ColumnElement[bool]]:
        """The claim as this request took it: once a retry has taken an expired claim over,
        the first request's late answer (or failure) no longer touches it."""
        clauses = [col(IdempotencyRow.owner) == owner, col(IdempotencyRow.key) == key]
        if claimed_at is not None:
            clauses.append(col(IdempotencyRow.created_at) == claimed_at)
        return clauses

    async def finish(self, owner: str, key: str, status_code: int, body: str,
                     claimed_at: datetime | None = None) -> None:
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.execute(update(IdempotencyRow).where(*self._mine(owner, key, claimed_at))
                          .values(status_code=status_code, response=body))
        await self._run(run)

    async def abandon(self, owner: str, key: str, claimed_at: datetime | None = None) -> None:
        """A failed request frees its key, so the client's retry really runs."""
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.execute(delete(IdempotencyRow).where(*self._mine(owner, key, claimed_at)))
        await self._run(run)


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive UTC datetimes."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
