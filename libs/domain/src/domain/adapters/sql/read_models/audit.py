"""The audit screen: operator actions on client keys, newest first."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from domain.adapters.sql.read_models.shared import AUDIT, as_int, key_names, utc


@dataclass(frozen=True, slots=True)
class AuditItem:
    at: datetime
    actor: str
    action: str
    key_id: str
    key_name: str | None
    key_short_id: str | None
    detail: dict[str, Any]


def audit(engine: Engine, *, page: int = 1, page_size: int = 50) -> tuple[list[AuditItem], int]:
    """Operator actions, newest first."""
    page, page_size = max(1, page), max(1, page_size)
    a = AUDIT.c
    with engine.connect() as conn:
        total = as_int(conn.execute(select(func.count()).select_from(AUDIT)).scalar())
        rows = conn.execute(select(a.at, a.actor, a.action, a.key_id, a.detail)
                            .order_by(a.at.desc(), a.id.desc()).limit(page_size).offset((page - 1) * page_size)).all()
        names = key_names(conn, [r.key_id for r in rows])
    return [AuditItem(utc(r.at), r.actor, r.action, r.key_id, names.get(r.key_id, (None, None))[1],
                      names.get(r.key_id, (None, None))[0], json.loads(r.detail or "{}")) for r in rows], total
