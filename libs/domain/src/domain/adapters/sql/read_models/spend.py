"""The spend screen: ledger totals grouped by day, model, key source or client key."""
from __future__ import annotations

from datetime import tzinfo
from typing import Any, Literal

from sqlalchemy import Engine, func, select

from domain.adapters.sql.read_models.shared import (
    GroupRow,
    LedgerFilter,
    Totals,
    key_names,
    local_day,
    spend_c,
    totals_columns,
    totals_of,
)
from domain.periods import KST

GroupBy = Literal["day", "model", "key_source", "client_key"]


def spend(engine: Engine, group_by: GroupBy, flt: LedgerFilter, *, limit: int = 1000,
          tz: tzinfo = KST) -> tuple[list[GroupRow], Totals]:
    """Ledger totals grouped by day (local, budget time zone), model, key source or client key, plus the grand
    total under the same filters. Callers should bound ``since`` (the console does) so the
    scan stays on ``ix_spend_created_at`` / ``ix_spend_*_created``."""
    conds = flt.conditions()
    with engine.connect() as conn:
        total = totals_of(conn.execute(select(*totals_columns()).where(*conds)).one())
        if group_by == "day":
            key = local_day(engine, tz).label("key")
            order: list[Any] = [key]
        else:
            column = {"model": spend_c.model, "key_source": spend_c.key_source,
                      "client_key": spend_c.client_key_id}[group_by]
            key = column.label("key")
            order = [func.coalesce(func.sum(spend_c.cost_nanos), 0).desc(), func.count().desc(), key]
        rows = conn.execute(select(key, *totals_columns()).where(*conds).group_by(key).order_by(*order)
                            .limit(limit)).all()
        names = key_names(conn, [r.key for r in rows if r.key]) if group_by == "client_key" else {}
    out = []
    for r in rows:
        k = "" if r.key is None else str(r.key)
        if group_by == "client_key":
            short, name = names.get(k, ("", ""))
            label = f"{name} ({short})" if short else ("anonymous" if not k else k[:8])
        else:
            label = k
        out.append(GroupRow(k, label, totals_of(r)))
    return out, total
