"""The requests screen and the Overview's "now" view: pages of the request log (every client
request once, refusals included), the last minutes by status class with latency and
time-to-first-token percentiles, and the same figures per bucket over the last hours (with
the ledger's cost) for the charts.

Percentiles are computed by PostgreSQL (``percentile_disc``) and, on SQLite (small embedded
installs), here, with the same nearest-rank rule."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Integer, case, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.read_models.shared import REQUESTS, as_int, key_names, requests_c, spend_c, utc


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
    ttft_ms: int | None = None  # a stream's time to its first event


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
                   requests_c.pii_counts, requests_c.ttft_ms)
            .where(*conds).order_by(requests_c.created_at.desc(), requests_c.id.desc())
            .limit(page_size).offset((page - 1) * page_size)).all()
        names = key_names(conn, [r.client_key_id for r in rows if r.client_key_id])
    items = []
    for r in rows:
        short_id, name = names.get(r.client_key_id or "", (None, None))
        items.append(RequestItem(r.request_id, utc(r.created_at), r.route, int(r.status), r.error_code,
                                 r.client_key_id, r.model, r.key_source, r.fallback_reason, r.upstream,
                                 as_int(r.latency_ms), r.cost_nanos, name, short_id, pii_counts_of(r.pii_counts),
                                 r.ttft_ms))
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


def _pct(sorted_values: Sequence[int], p: float) -> int | None:
    """The nearest-rank percentile (as ``percentile_disc``): a value that was observed."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 1))  # ceil(n * p), at least the first
    return int(sorted_values[min(len(sorted_values), int(rank)) - 1])


@dataclass(frozen=True, slots=True)
class Window:
    """Client requests in a span of time: by status class ("2xx", "4xx", ...), errors
    (status >= 400), latency to the full answer and a stream's time to its first event
    (p50/p95, ms; None without samples), and the ledger's cost when asked for."""

    requests: int = 0
    errors: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    p50_ms: int | None = None
    p95_ms: int | None = None
    ttft_p50_ms: int | None = None
    ttft_p95_ms: int | None = None
    streams: int = 0
    cost_nanos: int = 0
    unpriced: int = 0


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    window: Window


def _bucket_expr(engine: Engine, column: Any, seconds: int) -> ColumnElement[Any]:
    """The bucket number of a timestamp: whole ``seconds`` since the epoch. Literal SQL (no
    bound parameter) so GROUP BY repeats it textually."""
    n = int(seconds)
    if engine.dialect.name == "postgresql":
        return literal_column(f"floor(extract(epoch from {column.table.name}.{column.name}) / {n})::bigint")
    # SQLite keeps UTC wall-clock text 'YYYY-MM-DD HH:MM:SS[.ffffff][+00:00]'
    return cast(func.strftime("%s", func.substr(column, 1, 19)), Integer) // n


def _percentile_columns(engine: Engine) -> list[Any]:
    if engine.dialect.name != "postgresql":
        return []
    return [func.percentile_disc(0.5).within_group(requests_c.latency_ms).label("p50"),
            func.percentile_disc(0.95).within_group(requests_c.latency_ms).label("p95"),
            func.percentile_disc(0.5).within_group(requests_c.ttft_ms).label("t50"),
            func.percentile_disc(0.95).within_group(requests_c.ttft_ms).label("t95")]


def windows(engine: Engine, since: datetime, until: datetime | None = None, *, bucket_seconds: int | None = None,
            with_cost: bool = False) -> dict[int, Window]:
    """Request-log figures since ``since`` (until ``until``, exclusive), in one window (key 0)
    or per bucket of ``bucket_seconds`` (key: the bucket number since the epoch)."""
    since = utc(since)
    conds: list[ColumnElement[bool]] = [requests_c.created_at >= since]
    if until is not None:
        conds.append(requests_c.created_at < utc(until))
    # One window: no bucket column at all (a constant in GROUP BY would be read as a position).
    bucket = [_bucket_expr(engine, requests_c.created_at, bucket_seconds).label("b")] if bucket_seconds else []
    cls = (requests_c.status // 100).label("cls")
    counts: dict[int, dict[str, int]] = {}
    streams: dict[int, int] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(*bucket, cls, func.count().label("n"), func.count(requests_c.ttft_ms).label("s"))
                              .where(*conds).group_by(*bucket, cls)):
            b = _b(r)
            counts.setdefault(b, {})[f"{int(r.cls)}xx"] = int(r.n)
            streams[b] = streams.get(b, 0) + int(r.s)
        pcts: dict[int, tuple[int | None, ...]] = {}
        if engine.dialect.name == "postgresql":
            for r in conn.execute(select(*bucket, *_percentile_columns(engine)).where(*conds).group_by(*bucket)):
                pcts[_b(r)] = tuple(None if v is None else int(v) for v in (r.p50, r.p95, r.t50, r.t95))
        else:
            lat: dict[int, list[int]] = {}
            ttft: dict[int, list[int]] = {}
            for r in conn.execute(select(*bucket, requests_c.latency_ms, requests_c.ttft_ms).where(*conds)):
                lat.setdefault(_b(r), []).append(int(r.latency_ms or 0))
                if r.ttft_ms is not None:
                    ttft.setdefault(_b(r), []).append(int(r.ttft_ms))
            for b, values in lat.items():
                values.sort()
                firsts = sorted(ttft.get(b, []))
                pcts[b] = (_pct(values, 0.5), _pct(values, 0.95), _pct(firsts, 0.5), _pct(firsts, 0.95))
        costs: dict[int, tuple[int, int]] = {}
        if with_cost:
            sconds: list[ColumnElement[bool]] = [spend_c.created_at >= since]
            if until is not None:
                sconds.append(spend_c.created_at < utc(until))
            sb = [_bucket_expr(engine, spend_c.created_at, bucket_seconds).label("b")] if bucket_seconds else []
            for r in conn.execute(select(*sb, func.coalesce(func.sum(spend_c.cost_nanos), 0).label("c"),
                                         func.coalesce(func.sum(case((spend_c.cost_nanos.is_(None), 1), else_=0)), 0)
                                         .label("u")).where(*sconds).group_by(*sb)):
                costs[_b(r)] = (int(r.c or 0), int(r.u or 0))
    out: dict[int, Window] = {}
    for b in set(counts) | set(costs):
        by_class = dict(sorted(counts.get(b, {}).items()))
        p50, p95, t50, t95 = pcts.get(b, (None, None, None, None))
        cost, unpriced = costs.get(b, (0, 0))
        out[b] = Window(requests=sum(by_class.values()),
                        errors=sum(n for c, n in by_class.items() if c[0] in "45"), by_class=by_class,
                        p50_ms=p50, p95_ms=p95, ttft_p50_ms=t50, ttft_p95_ms=t95, streams=streams.get(b, 0),
                        cost_nanos=cost, unpriced=unpriced)
    return out


def _b(row: Any) -> int:
    """A row's bucket number (0 when the query had no buckets)."""
    return int(getattr(row, "b", 0) or 0)


def now_window(engine: Engine, since: datetime) -> Window:
    """The "now" view: every client request since ``since`` (the last 15 minutes)."""
    return windows(engine, since).get(0, Window())


def timeseries(engine: Engine, now: datetime, *, hours: int = 24, bucket_seconds: int = 3600) -> list[Bucket]:
    """The last ``hours`` in buckets of ``bucket_seconds`` (aligned to the epoch, the last one
    holding ``now``), oldest first, every bucket present (empty ones as zeros): requests by
    status class, latency and TTFT percentiles, and the ledger's cost."""
    now = utc(now)
    step = max(60, int(bucket_seconds))
    last = int(now.timestamp()) // step
    count = max(1, -(-int(hours) * 3600 // step))
    first = last - count + 1
    since = datetime.fromtimestamp(first * step, UTC)
    found = windows(engine, since, bucket_seconds=step, with_cost=True)
    return [Bucket(datetime.fromtimestamp(b * step, UTC), found.get(b, Window())) for b in range(first, last + 1)]
