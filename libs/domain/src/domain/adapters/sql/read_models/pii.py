"""Personal data the guard found: per kind, in total and per client key (counts, never
values): sent upstream (the ledger's rows) and blocked (the request log's refusals)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, BigInteger, Connection, Engine, cast, func, select, true
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.read_models.request_log import RequestFilter
from domain.adapters.sql.read_models.shared import REQUESTS, SPEND, LedgerFilter, as_int, key_names, requests_c, spend_c


@dataclass(frozen=True, slots=True)
class PiiKeyCounts:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    counts: dict[str, int]
    blocked: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PiiCounts:
    """Personal data the guard found, per kind, in total and per client key; counts, never
    values. ``total``/``counts``: in requests that went upstream (masked, or sent under
    ``off``), from the ledger rows; ``blocked``: in requests refused under ``block``
    (``pii_detected``), which leave no ledger row, from the request log."""

    total: dict[str, int]
    by_key: list[PiiKeyCounts]
    blocked: dict[str, int] = field(default_factory=dict)


def _sums(conn: Connection, table: Any, column: Any, key_column: Any,
          conditions: Sequence[ColumnElement[bool]]) -> dict[str | None, dict[str, int]]:
    """Sums per client key and kind of a ``pii_counts`` column (JSON text per row), in the
    database: one JSON-expanding scan bounded by the conditions (a time range at least)."""
    if conn.dialect.name == "postgresql":
        pairs = func.json_each_text(cast(column, JSON)).table_valued("key", "value").lateral()
    else:
        pairs = func.json_each(column).table_valued("key", "value")
    q = (select(key_column, pairs.c.key, func.sum(cast(pairs.c.value, BigInteger)))
         .select_from(table).join(pairs, true())
         .where(column.is_not(None), *conditions)
         .group_by(key_column, pairs.c.key))
    per_key: dict[str | None, dict[str, int]] = {}
    for key_id, kind, n in conn.execute(q):
        per_key.setdefault(key_id, {})[kind] = as_int(n)
    return per_key


def _summed(per_key: dict[str | None, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in per_key.values():
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items()))


def pii_counts(engine: Engine, flt: LedgerFilter) -> PiiCounts:
    """Per-kind sums of the ledger's ``pii_counts`` (requests sent) and of the request log's
    for ``pii_detected`` refusals (requests blocked), over ``flt``'s period and key; keys
    ranked by all they had found."""
    refused = [requests_c.error_code == "pii_detected",
               *RequestFilter(None, flt.client_key_id, flt.since, flt.until).conditions()]
    with engine.connect() as conn:
        sent = _sums(conn, SPEND, spend_c.pii_counts, spend_c.client_key_id, flt.conditions())
        blocked = _sums(conn, REQUESTS, requests_c.pii_counts, requests_c.client_key_id, refused)
        names = key_names(conn, [k for k in {*sent, *blocked} if k is not None])

    def found(key_id: str | None) -> int:
        return sum(sent.get(key_id, {}).values()) + sum(blocked.get(key_id, {}).values())

    by_key = []
    for key_id in sorted({*sent, *blocked}, key=lambda k: (-found(k), k or "")):
        short_id, name = names.get(key_id or "") or (None, None)
        by_key.append(PiiKeyCounts(key_id, short_id, name, dict(sorted(sent.get(key_id, {}).items())),
                                   dict(sorted(blocked.get(key_id, {}).items()))))
    return PiiCounts(_summed(sent), by_key, _summed(blocked))
