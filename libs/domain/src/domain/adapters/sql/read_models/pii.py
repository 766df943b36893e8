"""Personal data the guard found: per kind, in total and per client key (counts, never values)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, Engine, cast, func, select, true

from domain.adapters.sql.read_models.shared import SPEND, LedgerFilter, as_int, key_names, spend_c


@dataclass(frozen=True, slots=True)
class PiiKeyCounts:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class PiiCounts:
    """Personal data the guard found (masked or sent under ``off``; a blocked request leaves
    no row), per kind, in total and per client key. Counts, never values."""

    total: dict[str, int]
    by_key: list[PiiKeyCounts]


def pii_counts(engine: Engine, flt: LedgerFilter) -> PiiCounts:
    """Sums of ``spend_ledger.pii_counts`` (JSON text per row) over the filtered rows, in the
    database (one JSON-expanding scan bounded by the filter's time range)."""
    if engine.dialect.name == "postgresql":
        pairs = func.json_each_text(cast(spend_c.pii_counts, JSON)).table_valued("key", "value").lateral()
    else:
        pairs = func.json_each(spend_c.pii_counts).table_valued("key", "value")
    q = (select(spend_c.client_key_id, pairs.c.key, func.sum(cast(pairs.c.value, BigInteger)))
         .select_from(SPEND).join(pairs, true())
         .where(spend_c.pii_counts.is_not(None), *flt.conditions())
         .group_by(spend_c.client_key_id, pairs.c.key))
    total: dict[str, int] = {}
    per_key: dict[str | None, dict[str, int]] = {}
    with engine.connect() as conn:
        for key_id, kind, n in conn.execute(q):
            total[kind] = total.get(kind, 0) + as_int(n)
            per_key.setdefault(key_id, {})[kind] = as_int(n)
        names = key_names(conn, [k for k in per_key if k is not None])
    ranked = sorted(per_key.items(), key=lambda item: -sum(item[1].values()))
    by_key = []
    for key_id, counts in ranked:
        short_id, name = names.get(key_id or "") or (None, None)
        by_key.append(PiiKeyCounts(key_id, short_id, name, dict(sorted(counts.items()))))
    return PiiCounts(dict(sorted(total.items())), by_key)
