"""The admin audit log and the raised-alerts table, in SQL."""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor
from datetime import datetime

from sqlalchemy import Engine, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from domain.adapters.sql.tables import AdminAuditRow, AlertRow, table_of
from domain.alerts import Alert
from domain.audit import AuditEntry

_AUDIT = table_of(AdminAuditRow)
_ALERTS = table_of(AlertRow)


class SqlAuditLog:
    """Appends operator actions; reads are in ``read_models.audit``."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self.engine, self._executor = engine, executor

    def append_now(self, entry: AuditEntry) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(_AUDIT).values(at=entry.at, actor=entry.actor, action=entry.action.value,
                                               key_id=entry.key_id,
                                               detail=json.dumps(entry.detail, ensure_ascii=False)))

    async def append(self, entry: AuditEntry) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.append_now, entry)


class SqlAlertClaims:
    """``claim`` is an INSERT … ON CONFLICT DO NOTHING on (kind, subject, period): exactly
    one replica's insert lands, and only that one sends the alert."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self.engine, self._executor = engine, executor

    def claim_now(self, alert: Alert, at: datetime) -> bool:
        ins = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = (ins(_ALERTS).values(kind=alert.kind.value, subject=alert.subject[:160], period=alert.period[:32],
                                    created_at=at, text=alert.text, delivered=False)
                .on_conflict_do_nothing().returning(_ALERTS.c.kind))
        with self.engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    async def claim(self, alert: Alert, at: datetime) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.claim_now, alert, at)

    def mark_delivered(self, alert: Alert) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(_ALERTS).where(_ALERTS.c.kind == alert.kind.value,
                                               _ALERTS.c.subject == alert.subject[:160],
                                               _ALERTS.c.period == alert.period[:32]).values(delivered=True))
