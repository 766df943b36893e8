"""The alerts screen: the alerts raised most recently."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from domain.adapters.sql.read_models.shared import ALERTS, utc


@dataclass(frozen=True, slots=True)
class AlertItem:
    kind: str
    subject: str
    period: str
    created_at: datetime
    text: str
    delivered: bool


def alerts(engine: Engine, *, limit: int = 100) -> list[AlertItem]:
    """The most recent alerts raised."""
    c = ALERTS.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.kind, c.subject, c.period, c.created_at, c.text, c.delivered)
                            .order_by(c.created_at.desc()).limit(limit)).all()
    return [AlertItem(r.kind, r.subject, r.period, utc(r.created_at), r.text, bool(r.delivered)) for r in rows]
