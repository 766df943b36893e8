"""The SQL request log: batched by its writer thread on PostgreSQL and SQLite, any text
stored safely, and entries kept (not lost) while the database is away."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from domain.adapters.sql.database import make_engine
from domain.adapters.sql.read_models.pii import pii_counts
from domain.adapters.sql.read_models.request_log import RequestFilter, requests
from domain.adapters.sql.read_models.shared import LedgerFilter
from domain.adapters.sql.request_log import SqlRequestLog
from domain.money import Money
from domain.request_log import RequestLogEntry
from tests.support.tcp_proxy import CuttableProxy


def _count(engine: Engine, tag: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM request_log WHERE request_id LIKE :t"),
                                {"t": f"{tag}%"}).scalar_one())


def test_entries_from_many_threads_are_written_once_each(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    log = SqlRequestLog(engine, batch_size=64)
    log.start()
    at = datetime.now(UTC)

    def burst(n: int) -> None:
        for i in range(250):
            log.record(RequestLogEntry(f"{tag}-{n}-{i}", at, "/api/v1/chat", 200 if i % 5 else 429,
                                       model="gpt-4o-mini", latency_ms=i, cost=Money(i)))

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert _count(engine, tag) == 1000 and log.written == 1000 and log.dropped == 0
    page = requests(engine, RequestFilter(status="429", since=at - timedelta(seconds=1)),
                            page_size=500)
    assert page.total >= 200 and all(i.status == 429 for i in page.items)


def test_any_text_is_stored_bounded(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    log = SqlRequestLog(engine)
    odd = f"{tag}\x00\u2028\ud800" + "가" * 400
    log.record(RequestLogEntry(odd, datetime.now(UTC), "/v1/" + "x" * 500, 400, error_code="c" * 500,
                               model="m\x00" * 200, upstream="u" * 500, client_key_id="k" * 100, latency_ms=-5))
    log.flush()
    clean = "".join("\ufffd" if c in "\x00\ud800" else c for c in odd[:200])
    page = requests(engine, RequestFilter(), request_id=clean)
    assert page.total == 1
    item = page.items[0]
    assert len(item.route) == 64 and item.latency_ms == 0 and item.model and "\x00" not in item.model


def test_entries_wait_for_the_database_and_are_then_written(pg_url: str) -> None:
    proxy = CuttableProxy(("127.0.0.1", 5432))
    port = proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    engine = make_engine(url)
    direct = make_engine(pg_url)
    tag = uuid.uuid4().hex[:8]
    log = SqlRequestLog(engine, retry_seconds=0.05)
    log.start()
    try:
        proxy.cut()
        for i in range(10):
            log.record(RequestLogEntry(f"{tag}-{i}", datetime.now(UTC), "/api/v1/chat", 503))
        assert _count(direct, tag) == 0
        proxy.restore()
        log.close()
        assert _count(direct, tag) == 10 and log.dropped == 0
    finally:
        proxy.cut()
        engine.dispose()
        direct.dispose()


def test_pii_counts_per_kind_are_kept_and_blocked_requests_summed_per_key(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    key = "k" + tag
    at = datetime.now(UTC)
    log = SqlRequestLog(engine)
    log.record(RequestLogEntry(f"{tag}-masked", at, "/v1/chat/completions", 200, client_key_id=key,
                               pii_counts={"rrn": 1, "card": 2}))
    log.record(RequestLogEntry(f"{tag}-blocked", at, "/v1/embeddings", 400, client_key_id=key,
                               error_code="pii_detected", pii_counts={"phone": 3, "rrn": 1}))
    log.record(RequestLogEntry(f"{tag}-blocked2", at, "/api/v1/chat", 400, client_key_id=key,
                               error_code="pii_detected", pii_counts={"phone": 1, "zero": 0}))
    log.record(RequestLogEntry(f"{tag}-clean", at, "/api/v1/chat", 200, client_key_id=key))
    log.flush()
    items = {i.request_id: i.pii_counts for i in requests(
        engine, RequestFilter(client_key_id=key)).items}
    assert items == {f"{tag}-masked": {"card": 2, "rrn": 1}, f"{tag}-blocked": {"phone": 3, "rrn": 1},
                     f"{tag}-blocked2": {"phone": 1}, f"{tag}-clean": {}}
    with engine.connect() as conn:  # a clean request stores NULL, a count never a value
        stored = dict(conn.execute(text("SELECT request_id, pii_counts FROM request_log WHERE client_key_id = :k"),
                                   {"k": key}).all())
    assert stored[f"{tag}-clean"] is None and stored[f"{tag}-masked"] == '{"card":2,"rrn":1}'
    # /admin/v1/pii's "blocked": the request log's pii_detected refusals only (the masked
    # request's counts come from its ledger row, of which this test writes none)
    found = pii_counts(engine, LedgerFilter(at - timedelta(seconds=1), None, key))
    assert (found.total, found.blocked) == ({}, {"phone": 4, "rrn": 1})
    assert [(k.client_key_id, k.counts, k.blocked) for k in found.by_key] == [(key, {}, {"phone": 4, "rrn": 1})]
    later = pii_counts(engine, LedgerFilter(at + timedelta(seconds=1), None, key))
    assert (later.blocked, later.by_key) == ({}, [])
