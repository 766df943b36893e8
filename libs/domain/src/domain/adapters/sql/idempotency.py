"""Idempotency keys: a retried request replays its stored answer instead of paying twice."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
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
    (422); while the first request is still running, a retry is told to wait (409)."""

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
                if row.status_code is None:
                    raise Conflict("idempotency_in_progress", field="Idempotency-Key", retry_after=1)
                return StoredAnswer(row.status_code, row.response or "")
        return await self._run(run)

    async def finish(self, owner: str, key: str, status_code: int, body: str) -> None:
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.execute(update(IdempotencyRow).where(col(IdempotencyRow.owner) == owner, col(IdempotencyRow.key) == key)
                          .values(status_code=status_code, response=body))
        await self._run(run)

    async def abandon(self, owner: str, key: str) -> None:
        """A failed request frees its key, so the client's retry really runs."""
        def run() -> None:
            with Session(self.engine) as s, s.begin():
                s.execute(delete(IdempotencyRow).where(col(IdempotencyRow.owner) == owner, col(IdempotencyRow.key) == key))
        await self._run(run)
