"""The requests screen: pages of the request log (every client request once, refusals
included) and the "now" window, the last minutes by status."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.read_models.shared import REQUESTS, as_int, key_names, requests_c, utc


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """``status``: one HTTP status (402), a class ("4xx", "5xx") or "error" (>= 400).
    ``until`` is exclusive."""

    status: str | None = None
    client_key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        st = (self.status or "").strip().lower()
        if st == "error":
            conds.append(requests_c.status >= 400)
        elif len(st) == 3 and st.endswith("xx") and st[0] in "12345":
            base = int(st[0]) * 100
            conds.extend([requests_c.status >= base, requests_c.status < base + 100])
        elif st:
            conds.append(requests_c.status == int(st))
        if self.client_key_id is not None:
            conds.append(requests_c.client_key_id == self.client_key_id)
        if self.since is not None:
            conds.append(requests_c.created_at >= utc(self.since))
        if self.until is not None:
            conds.append(requests_c.created_at < utc(self.until))
        return conds


def valid_status_filter(value: str) -> bool:
    """Whether ``value`` is a status filter ``RequestFilter`` understands."""
    st = value.strip().lower()
    return (st == "error" or (len(st) == 3 and st.endswith("xx") and st[0] in "12345")
            or (st.isdigit() and len(st) == 3 and 100 <= int(st) <= 599))


@dataclass(frozen=True, slots=True)
class RequestItem:
    request_id: str
    created_at: datetime
    route: str
    status: int
    error_code: str | None
    client_key_id: str | None
    model: str | None
    key_source: str | None
    fallback_reason: str | None
    upstream: str | None
    latency_ms: int
    cost_nanos: int | None
    client_name: str | None = None
    client_short_id: str | None = None
    pii_counts: dict[str, int] = field(default_factory=dict)  # per kind, never a value


@dataclass(frozen=True, slots=True)
class RequestPage:
    items: list[RequestItem]
    total: int
    page: int
    page_size: int


def requests(engine: Engine, flt: RequestFilter, *, page: int = 1, page_size: int = 50,
             request_id: str | None = None) -> RequestPage:
    """One page of the request log, newest first, and how many entries match in all."""
    page, page_size = max(1, page), max(1, page_size)
    conds = flt.conditions()
    if request_id is not None:
        conds.append(requests_c.request_id == request_id)
    with engine.connect() as conn:
        total = as_int(conn.execute(select(func.count()).select_from(REQUESTS).where(*conds)).scalar())
        rows = conn.execute(
            select(requests_c.request_id, requests_c.created_at, requests_c.route, requests_c.status,
                   requests_c.error_code, requests_c.client_key_id, requests_c.model, requests_c.key_source,
                   requests_c.fallback_reason, requests_c.upstream, requests_c.latency_ms, requests_c.cost_nanos,
                   requests_c.pii_counts)
            .where(*conds).order_by(requests_c.created_at.desc(), requests_c.id.desc())
            .limit(page_size).offset((page - 1) * page_size)).all()
        names = key_names(conn, [r.client_key_id for r in rows if r.client_key_id])
    items = []
    for r in rows:
        short_id, name = names.get(r.client_key_id or "", (None, None))
        items.append(RequestItem(r.request_id, utc(r.created_at), r.route, int(r.status), r.error_code,
                                 r.client_key_id, r.model, r.key_source, r.fallback_reason, r.upstream,
                                 as_int(r.latency_ms), r.cost_nanos, name, short_id, pii_counts_of(r.pii_counts)))
    return RequestPage(items, total, page, page_size)


def pii_counts_of(text: str | None) -> dict[str, int]:
    """A ``pii_counts`` column (JSON text, NULL: none) as a dict; anything unreadable as none."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(n) for k, n in sorted(value.items()) if isinstance(n, int) and not isinstance(n, bool)}


def request_window(engine: Engine, since: datetime) -> tuple[int, int]:
    """(requests, errors) since a moment: the "now" error rate (status >= 400)."""
    with engine.connect() as conn:
        row = conn.execute(select(func.count().label("n"),
                                  func.coalesce(func.sum(case((requests_c.status >= 400, 1), else_=0)), 0).label("e"))
                           .where(requests_c.created_at >= utc(since))).one()
    return as_int(row.n), as_int(row.e)


def recent_requests(engine: Engine, since: datetime, *, max_samples: int = 20_000) -> dict[str, Any]:
    """The "now" view: requests since a moment by status class, errors, and latency
    percentiles (p50/p95 over up to ``max_samples`` of the newest entries)."""
    cls = (requests_c.status // 100).label("cls")
    with engine.connect() as conn:
        by_class = {f"{int(r.cls)}xx": as_int(r.n) for r in conn.execute(
            select(cls, func.count().label("n")).where(requests_c.created_at >= utc(since)).group_by(cls))}
        latencies = sorted(as_int(v) for v in conn.execute(
            select(requests_c.latency_ms).where(requests_c.created_at >= utc(since))
            .order_by(requests_c.created_at.desc()).limit(max_samples)).scalars())

    def pct(p: float) -> int | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    total = sum(by_class.values())
    errors = sum(n for c, n in by_class.items() if c[0] in "45")
    return {"since": utc(since).isoformat().replace("+00:00", "Z"), "requests": total, "errors": errors,
            "by_class": by_class, "p50_ms": pct(0.5), "p95_ms": pct(0.95)}
