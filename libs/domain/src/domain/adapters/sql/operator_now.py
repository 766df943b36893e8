"""Read models of the console's "now" view and budget-risk columns: the last minutes of the
request log (by status class, latency and time-to-first-token percentiles), the same figures
per bucket over the last hours (with the ledger's cost), and when each client key was last
used.

Plain synchronous functions over an ``Engine`` (the admin API runs them in its database
pool). Every query is a range scan on an index of ``request_log`` or ``spend_ledger``
(``created_at``, or ``(client_key_id, created_at)``); percentiles are computed by
PostgreSQL (``percentile_disc``) and, on SQLite (small embedded installs), here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, case, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.tables import ClientKeyRow, RequestLogRow, SpendRow, table_of

_log = table_of(RequestLogRow).c
_spend = table_of(SpendRow).c
_keys = table_of(ClientKeyRow).c


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    return [func.percentile_disc(0.5).within_group(_log.latency_ms).label("p50"),
            func.percentile_disc(0.95).within_group(_log.latency_ms).label("p95"),
            func.percentile_disc(0.5).within_group(_log.ttft_ms).label("t50"),
            func.percentile_disc(0.95).within_group(_log.ttft_ms).label("t95")]


def windows(engine: Engine, since: datetime, until: datetime | None = None, *, bucket_seconds: int | None = None,
            with_cost: bool = False) -> dict[int, Window]:
    """Request-log figures since ``since`` (until ``until``, exclusive), in one window (key 0)
    or per bucket of ``bucket_seconds`` (key: the bucket number since the epoch)."""
    since = _utc(since)
    conds: list[ColumnElement[bool]] = [_log.created_at >= since]
    if until is not None:
        conds.append(_log.created_at < _utc(until))
    # One window: no bucket column at all (a constant in GROUP BY would be read as a position).
    bucket = [_bucket_expr(engine, _log.created_at, bucket_seconds).label("b")] if bucket_seconds else []
    cls = (_log.status // 100).label("cls")
    counts: dict[int, dict[str, int]] = {}
    streams: dict[int, int] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(*bucket, cls, func.count().label("n"), func.count(_log.ttft_ms).label("s"))
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
            for r in conn.execute(select(*bucket, _log.latency_ms, _log.ttft_ms).where(*conds)):
                lat.setdefault(_b(r), []).append(int(r.latency_ms or 0))
                if r.ttft_ms is not None:
                    ttft.setdefault(_b(r), []).append(int(r.ttft_ms))
            for b, values in lat.items():
                values.sort()
                firsts = sorted(ttft.get(b, []))
                pcts[b] = (_pct(values, 0.5), _pct(values, 0.95), _pct(firsts, 0.5), _pct(firsts, 0.95))
        costs: dict[int, tuple[int, int]] = {}
        if with_cost:
            sconds: list[ColumnElement[bool]] = [_spend.created_at >= since]
            if until is not None:
                sconds.append(_spend.created_at < _utc(until))
            sb = [_bucket_expr(engine, _spend.created_at, bucket_seconds).label("b")] if bucket_seconds else []
            for r in conn.execute(select(*sb, func.coalesce(func.sum(_spend.cost_nanos), 0).label("c"),
                                         func.coalesce(func.sum(case((_spend.cost_nanos.is_(None), 1), else_=0)), 0)
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
    now = _utc(now)
    step = max(60, int(bucket_seconds))
    last = int(now.timestamp()) // step
    count = max(1, -(-int(hours) * 3600 // step))
    first = last - count + 1
    since = datetime.fromtimestamp(first * step, UTC)
    found = windows(engine, since, bucket_seconds=step, with_cost=True)
    return [Bucket(datetime.fromtimestamp(b * step, UTC), found.get(b, Window())) for b in range(first, last + 1)]


def last_used(engine: Engine, key_ids: Iterable[str]) -> dict[str, datetime]:
    """When each key last made a request (any answer, refusals included), from the request
    log: one backward probe of ``ix_request_log_client_created`` per key (a correlated
    ``max``), so 1,000 keys cost 1,000 index lookups, not a scan of the log."""
    ids = list(dict.fromkeys(key_ids))
    out: dict[str, datetime] = {}
    if not ids:
        return out
    latest = (select(func.max(_log.created_at)).where(_log.client_key_id == _keys.id)
              .correlate(table_of(ClientKeyRow)).scalar_subquery())
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for r in conn.execute(select(_keys.id, latest.label("at")).where(_keys.id.in_(part))):
                if r.at is not None:
                    at = r.at if isinstance(r.at, datetime) else datetime.fromisoformat(str(r.at))
                    out[r.id] = _utc(at)
    return out


def recent_window_since(now: datetime, minutes: int = 15) -> datetime:
    return _utc(now) - timedelta(minutes=minutes)
