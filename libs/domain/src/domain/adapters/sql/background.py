"""Background responses awaiting their final usage, kept in the database so that any
replica — a restarted one included — goes on polling them."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update

from domain.adapters.sql.ledger import ID_LIMIT, bounded, record_from_json, record_to_json
from domain.adapters.sql.repositories import SqlBase, upsert_ignore
from domain.adapters.sql.spool import encode
from domain.adapters.sql.tables import BackgroundResponseRow
from domain.ledger import UsageRecord
from domain.pii import PiiPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingResponse:
    response_id: str  # the upstream's id, whole (the record's)
    record: UsageRecord  # the row as it will be stored, usage still unknown
    attempts: int
    created_at: datetime
    pii_policy: PiiPolicy = PiiPolicy.MASK  # the request's: how the reply is stored once it is known


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class SqlBackgroundResponses(SqlBase):
    """``track`` stores the pending row; ``claim_due`` hands the due ones to one poller at a
    time (a lease: a claimed row is not due again for ``lease``); once the final ledger row
    is stored (settling the hold), ``forget`` drops the pending one."""

    first_poll = timedelta(seconds=2)

    async def track(self, record: UsageRecord, pii_policy: PiiPolicy = PiiPolicy.OFF) -> None:
        if not record.response_id:
            raise ValueError("a background response without an id cannot be polled")
        now = datetime.now(UTC)
        row = {"response_id": bounded(record.response_id, ID_LIMIT), "request_id": bounded(record.request_id, ID_LIMIT),
               "client_key_id": record.client_key_id,
               "reservation_id": record.reservation.id if record.reservation else None,
               "record": encode({**record_to_json(record), "pii_policy": pii_policy.value}), "attempts": 0, "created_at": now,
               "next_poll_at": now + self.first_poll}

        def run() -> None:
            with self.engine.begin() as conn:
                conn.execute(upsert_ignore(self.engine)(BackgroundResponseRow).values(**row).on_conflict_do_nothing())
        await self._run(run)

    def claim_due(self, now: datetime, lease: timedelta, limit: int = 50) -> list[PendingResponse]:
        table = BackgroundResponseRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            query = select(table).where(table.c.next_poll_at <= now).order_by(table.c.next_poll_at).limit(limit)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                conn.execute(update(table).where(table.c.response_id.in_([r.response_id for r in rows]))
                             .values(next_poll_at=now + lease))
        return [p for p in (self._pending(r) for r in rows) if p is not None]

    def _pending(self, row: object) -> PendingResponse | None:
        try:
            doc = json.loads(row.record)  # type: ignore[attr-defined]
            record = record_from_json(doc)
            # A row without a policy is masked: the server's default, and the safe side.
            pii_policy = PiiPolicy(doc.get("pii_policy") or PiiPolicy.MASK.value)
        except Exception:
            # Unreadable: forget it, so its hold is swept as stale and charged (never free).
            log.error("unreadable background response %s; its hold will be charged as orphaned",
                      row.response_id[:80])  # type: ignore[attr-defined]
            self.forget(row.response_id)  # type: ignore[attr-defined]
            return None
        return PendingResponse(record.response_id or "", record, row.attempts,  # type: ignore[attr-defined]
                               _aware(row.created_at), pii_policy)  # type: ignore[attr-defined]

    def find(self, response_id: str) -> PendingResponse | None:
        table = BackgroundResponseRow.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.response_id == bounded(response_id, ID_LIMIT))).first()
        return self._pending(row) if row is not None else None

    def reschedule(self, response_id: str, attempts: int, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(BackgroundResponseRow)
                         .where(BackgroundResponseRow.response_id == bounded(response_id, ID_LIMIT))  # type: ignore[arg-type]
                         .values(attempts=attempts, next_poll_at=at))

    def forget(self, response_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(BackgroundResponseRow)
                         .where(BackgroundResponseRow.response_id == bounded(response_id, ID_LIMIT)))  # type: ignore[arg-type]

    def pending_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(BackgroundResponseRow)).scalar_one())
