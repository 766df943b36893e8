"""The "now" read models give the same figures on PostgreSQL (percentile_disc in the
database) and SQLite (nearest rank here): status classes, latency and TTFT percentiles,
buckets, the ledger's cost, and each key's last use."""
from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from domain.adapters.sql.ledger import write_records
from domain.adapters.sql.read_models import keys as key_views
from domain.adapters.sql.read_models import request_log as now_views
from domain.adapters.sql.repositories import SqlClientKeyRepository
from domain.adapters.sql.request_log import SqlRequestLog
from domain.key_policy import KeySource
from domain.ledger import UsageRecord
from domain.money import Money
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage


def _base() -> datetime:
    """An hour of the distant past no other test writes to (the PostgreSQL database is shared)."""
    return datetime(2001, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(200_000))


def test_windows_and_buckets(engine: Engine) -> None:
    base = _base()
    log = SqlRequestLog(engine)
    # 20 answers in the first half hour (latency 10..200 ms; every other one a stream with
    # TTFT 5..95 ms), 3 refusals and a 502 in the second
    for i in range(20):
        log.record(RequestLogEntry(f"now-{uuid.uuid4().hex}", base + timedelta(minutes=i), "/v1/chat/completions",
                                   200, latency_ms=(i + 1) * 10, ttft_ms=(i // 2) * 10 + 5 if i % 2 else None))
    for i, status in enumerate((400, 402, 429, 502)):
        log.record(RequestLogEntry(f"now-{uuid.uuid4().hex}", base + timedelta(minutes=31 + i), "/api/v1/chat",
                                   status, latency_ms=1))
    log.flush()
    write_records(engine, [UsageRecord(
        request_id=f"now-{uuid.uuid4().hex}", created_at=base + timedelta(minutes=m), client_key_id=None,
        route="/v1/chat/completions", model="gpt-4o-mini", usage=TokenUsage(input_tokens=1, output_tokens=1),
        cost=Money(cost) if cost is not None else None, catalog_version="t", key_source=KeySource.SERVER,
        latency_ms=1) for m, cost in ((1, 1_000), (2, 2_000), (40, None))])

    whole = now_views.windows(engine, base, base + timedelta(hours=1), with_cost=True)[0]
    assert (whole.requests, whole.errors, whole.by_class) == (24, 4, {"2xx": 20, "4xx": 3, "5xx": 1})
    assert (whole.streams, whole.cost_nanos, whole.unpriced) == (10, 3_000, 1)
    # nearest rank over 24 latencies (1, 1, 1, 1, 10, 20, ..., 200): the 12th and the 23rd
    assert (whole.p50_ms, whole.p95_ms) == (80, 190)
    # TTFT of the 10 streams: 5, 15, ..., 95
    assert (whole.ttft_p50_ms, whole.ttft_p95_ms) == (45, 95)

    series = now_views.timeseries(engine, base + timedelta(minutes=59), hours=1, bucket_seconds=1800)
    assert [b.start for b in series] == [base, base + timedelta(minutes=30)]
    first, second = (b.window for b in series)
    assert (first.requests, first.errors, first.cost_nanos, first.p50_ms) == (20, 0, 3_000, 100)
    assert (second.requests, second.by_class, second.unpriced, second.ttft_p50_ms) == (4, {"4xx": 3, "5xx": 1}, 1,
                                                                                        None)
    empty = now_views.now_window(engine, base + timedelta(days=3650 * 40))
    assert (empty.requests, empty.p50_ms, empty.ttft_p95_ms) == (0, None, None)


def test_last_used_per_key(engine: Engine) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from domain.client_keys import BudgetLimits
    from domain.use_cases.client_keys import IssueClientKey

    class Clock:
        def now(self) -> datetime:
            return datetime.now(UTC)

    executor = ThreadPoolExecutor(2)
    repo = SqlClientKeyRepository(engine, executor)
    issue = IssueClientKey(repo, Clock(), b"s" * 32)
    used, idle = (asyncio.run(issue.execute(f"k-{uuid.uuid4().hex[:6]}", BudgetLimits(None, None))).key.id
                  for _ in range(2))
    base = _base()
    log = SqlRequestLog(engine)
    for m in (5, 1, 3):
        log.record(RequestLogEntry(f"lu-{uuid.uuid4().hex}", base + timedelta(minutes=m), "/api/v1/chat", 402,
                                   client_key_id=used))
    log.flush()
    seen = {k.id: k.last_used_at for k in key_views.keys(engine, datetime.now(UTC)) if k.id in (used, idle)}
    assert seen == {used: base + timedelta(minutes=5), idle: None}
    one = key_views.key(engine, datetime.now(UTC), used)
    assert one is not None and one.last_used_at == base + timedelta(minutes=5)
    executor.shutdown()


def test_overview_counts_nothing_dated_after_today(tmp_path) -> None:
    """A ledger row and a request-log entry dated tomorrow (a clock running ahead) are in no
    panel: not today, not this month, not the top models: on PostgreSQL (GROUPING SETS) and
    SQLite alike, each in a database of its own so the totals are exact."""
    from domain.adapters.sql.database import make_engine
    from domain.adapters.sql.read_models import overview
    from domain.periods import KST, day_start
    from tests.support.database import create_database, drop_database, migrate

    pg = create_database("llm_future")
    urls = [pg, f"sqlite:///{tmp_path / 'future.db'}"]
    try:
        for url in urls:
            migrate(url)
            engine = make_engine(url)
            now = datetime.now(UTC)
            tomorrow = day_start(now, KST) + timedelta(hours=25)  # 01:00 tomorrow, Korean time
            rows = [(now - timedelta(minutes=1), "gpt-4o-mini", 1_000), (tomorrow, "gpt-4.1", 5_000)]
            write_records(engine, [UsageRecord(
                request_id=f"f-{uuid.uuid4().hex}", created_at=at, client_key_id=None, route="/v1/chat/completions",
                model=model, usage=TokenUsage(input_tokens=1, output_tokens=1), cost=Money(cost),
                catalog_version="t", key_source=KeySource.SERVER, latency_ms=1) for at, model, cost in rows])
            log = SqlRequestLog(engine)
            for at, _, _ in rows:
                log.record(RequestLogEntry(f"f-{uuid.uuid4().hex}", at, "/v1/chat/completions", 200))
            log.flush()
            ov = overview.overview(engine, now, tz=KST)
            assert (ov.today.requests, ov.today.cost_nanos) == (1, 1_000), url
            assert (ov.month.requests, ov.month.cost_nanos) == (1, 1_000), url
            assert [m.key for m in ov.top_models] == ["gpt-4o-mini"], url
            assert sum(d.totals.cost_nanos for d in ov.by_day) == 1_000, url
            engine.dispose()
    finally:
        drop_database(pg)


def test_top_models_count_a_snapshot_under_its_family(tmp_path) -> None:
    """The upstream answers with dated names (gpt-4o-mini-2024-07-18) while some rows keep the
    requested name: grouped by the catalogue's family they are one top-models row, on
    PostgreSQL (GROUPING SETS) and SQLite alike; a model outside the catalogue keeps its name."""
    from domain.adapters.prices import load_price_catalog
    from domain.adapters.sql.database import make_engine
    from domain.adapters.sql.read_models import overview
    from domain.model_catalog import ModelCatalog
    from domain.periods import KST
    from tests.support.database import create_database, drop_database, migrate

    catalog = ModelCatalog.from_setting(load_price_catalog(), "house-model")
    pg = create_database("llm_families")
    try:
        for url in (pg, f"sqlite:///{tmp_path / 'families.db'}"):
            migrate(url)
            engine = make_engine(url)
            now = datetime.now(UTC) - timedelta(minutes=1)
            rows = [("gpt-4o-mini-2024-07-18", 2_000), ("gpt-4o-mini", 1_000), ("gpt-4.1", 2_500),
                    ("house-model", 0)]
            write_records(engine, [UsageRecord(
                request_id=f"fam-{uuid.uuid4().hex}", created_at=now, client_key_id=None, route="/v1/chat/completions",
                model=model, usage=TokenUsage(input_tokens=1, output_tokens=1), cost=Money(cost),
                catalog_version="t", key_source=KeySource.SERVER, latency_ms=1) for model, cost in rows])
            ov = overview.overview(engine, now, tz=KST, model_group=lambda m: catalog.family_of(m) or m)
            assert [(m.key, m.totals.requests, m.totals.cost_nanos) for m in ov.top_models] == [
                ("gpt-4o-mini", 2, 3_000), ("gpt-4.1", 1, 2_500), ("house-model", 1, 0)], url
            ungrouped = overview.overview(engine, now, tz=KST)
            assert len(ungrouped.top_models) == 4, url
            engine.dispose()
    finally:
        drop_database(pg)
