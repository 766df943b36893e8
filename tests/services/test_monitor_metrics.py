"""/metrics: valid exposition (prometheus_client parser and `promtool check metrics`), and its
business figures equal sums computed independently from the ledger."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from domain.adapters.fakes import FakeHostMetrics
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.ledger import write_records
from domain.adapters.sql.tables import BudgetCounterRow, ClientKeyRow
from domain.client_keys import scope_of
from domain.key_policy import KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.periods import day_key, day_start, month_start
from domain.usage import TokenUsage
from monitor.app import make_app
from monitor.settings import MonitorSettings

RATE = Decimal("1300")


def _settings(url: str, tmp_path, **kw) -> MonitorSettings:
    base = dict(database_url=url, stack_pid_dir=tmp_path / "run", chat_api_url="http://127.0.0.1:9",
                usd_krw_rate=RATE, metrics_cache_seconds=0)
    return MonitorSettings(**{**base, **kw})


def _scrape(client: TestClient) -> str:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def _samples(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _record(model: str, source: KeySource, *, cost_usd: str | None, at: datetime, outcome=Outcome.OK,
            usage: TokenUsage | None = None, conversation: str | None = None, client: str | None = None):
    return UsageRecord(
        request_id=f"mon-{uuid.uuid4().hex}", created_at=at, client_key_id=client, route="/api/v1/chat", model=model,
        usage=usage or TokenUsage(input_tokens=120, output_tokens=45, cached_input_tokens=20, reasoning_tokens=5),
        cost=None if cost_usd is None else Money.from_usd(cost_usd), catalog_version="test", key_source=source,
        outcome=outcome, conversation_id=conversation)


@pytest.fixture(scope="module")
def ledger(pg_url):
    """A series of requests, as chat_api would have recorded them, plus a capped client key."""
    engine = make_engine(pg_url, pool_size=2)
    now = datetime.now(UTC)
    earlier_this_month = now.replace(day=1, hour=0, minute=0, second=1) if now.day > 1 else now
    last_month = now - timedelta(days=40)
    write_records(engine, [
        _record("gpt-4o-mini", KeySource.SERVER, cost_usd="0.000123456", at=now, conversation=f"c-{uuid.uuid4()}"),
        _record("gpt-4o-mini", KeySource.SERVER, cost_usd="0.5", at=earlier_this_month),
        _record("gpt-4o-mini", KeySource.USER, cost_usd="0.25", at=now, outcome=Outcome.ABORTED),
        _record("gpt-4.1", KeySource.SERVER, cost_usd="1.75", at=last_month),
        _record("gpt-4.1", KeySource.SERVER, cost_usd="0.000001", at=now, outcome=Outcome.ERROR,
                usage=TokenUsage(input_tokens=7)),
        _record("my-finetune", KeySource.SERVER, cost_usd=None, at=now),
    ])
    key_id = uuid.uuid4().hex
    short_id = key_id[:8]
    with engine.begin() as conn:
        conn.execute(ClientKeyRow.__table__.insert().values(
            id=key_id, short_id=short_id, name="monitor-test", key_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            daily_limit_nanos=Money.from_usd("2").nanos, monthly_limit_nanos=Money.from_usd("10").nanos,
            may_use_server_key=True, created_at=now))
        conn.execute(BudgetCounterRow.__table__.insert().values(
            scope=scope_of(key_id), period=day_key(now), spent_nanos=Money.from_usd("0.5").nanos,
            reserved_nanos=0))
    yield engine, short_id
    engine.dispose()


def _sql(engine, query: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).all()


def test_metrics_parse_and_pass_promtool(ledger, pg_url, tmp_path):
    client = TestClient(make_app(_settings(pg_url, tmp_path), host_metrics=FakeHostMetrics()))
    exposition = _scrape(client)
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    for name in ("host_cpu_seconds", "host_load1", "host_memory_total_bytes", "host_filesystem_size_bytes",
                 "host_network_receive_bytes", "host_boot_time_seconds", "llm_database_up", "llm_spend_usd",
                 "llm_tokens", "llm_requests", "llm_budget_utilisation_ratio", "llm_active_conversations",
                 "llm_unpriced_requests", "llm_database_query_seconds", "llm_chat_api_ready"):
        assert name in families, name
    assert all(f.documentation for f in families.values()), "every family has HELP"
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr


def test_spend_figures_equal_ledger_sums(ledger, pg_url, tmp_path):
    engine, short_id = ledger
    client = TestClient(make_app(_settings(pg_url, tmp_path), host_metrics=FakeHostMetrics()))
    samples = _samples(_scrape(client))
    models = _sql(engine, "SELECT COUNT(DISTINCT model) FROM spend_ledger")[0][0]
    assert models <= 50, "more models than the label cap: per-model comparison would need 'other'"

    spend = {(lb["model"], lb["key_source"]): v for lb, v in samples["llm_spend_usd_total"]}
    expected = {(m, ks): int(n) / 1e9 for m, ks, n in _sql(
        engine, "SELECT model, key_source, COALESCE(SUM(cost_nanos), 0) FROM spend_ledger GROUP BY model, key_source")}
    assert spend == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert spend[("gpt-4o-mini", "server")] >= 0.500123456
    krw = {(lb["model"], lb["key_source"]): v for lb, v in samples["llm_spend_krw_total"]}
    assert krw == pytest.approx({k: v * float(RATE) for k, v in expected.items()}, rel=1e-12, abs=1e-9)

    tokens = {(lb["kind"], lb["model"], lb["key_source"]): v for lb, v in samples["llm_tokens_total"]}
    for model, ks, inp, cached, out, reasoning in _sql(
            engine, "SELECT model, key_source, SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), "
                    "SUM(reasoning_tokens) FROM spend_ledger GROUP BY model, key_source"):
        for kind, value in (("input", inp), ("cached_input", cached), ("output", out), ("reasoning", reasoning)):
            assert tokens[(kind, model, ks)] == value

    requests = {(lb["model"], lb["key_source"], lb["outcome"]): v for lb, v in samples["llm_requests_total"]}
    assert requests == {(m, ks, oc): n for m, ks, oc, n in _sql(
        engine, "SELECT model, key_source, outcome, COUNT(*) FROM spend_ledger GROUP BY model, key_source, outcome")}

    unpriced = {lb["model"]: v for lb, v in samples["llm_unpriced_requests_total"] if v}
    assert unpriced == {m: n for m, n in _sql(
        engine, "SELECT model, COUNT(*) FROM spend_ledger WHERE NOT priced GROUP BY model")}
    assert unpriced["my-finetune"] >= 1

    now = datetime.now(UTC)
    windows = {(lb["window"], lb["key_source"]): v for lb, v in samples["llm_spend_usd"]}
    # today and this month are Korean (BUDGET_TIMEZONE) days and months, as budgets are
    for window, start in (("today", day_start(now)), ("month", month_start(now))):
        for source in ("server", "user"):
            (nanos,), = _sql(engine, "SELECT COALESCE(SUM(cost_nanos), 0) FROM spend_ledger "
                                     "WHERE created_at >= :s AND key_source = :ks", s=start, ks=source)
            assert windows[(window, source)] == pytest.approx(int(nanos) / 1e9, rel=1e-12, abs=1e-12)
    assert windows[("month", "server")] >= windows[("today", "server")] >= 0.000124
    assert windows[("today", "user")] >= 0.25

    ratios = {(lb["client"], lb["window"]): v for lb, v in samples["llm_budget_utilisation_ratio"]}
    assert ratios[(short_id, "day")] == pytest.approx(0.25)
    assert ratios[(short_id, "month")] == 0.0  # no monthly counter yet

    (active,), = _sql(engine, "SELECT COUNT(*) FROM conversations WHERE updated_at >= :s",
                      s=now - timedelta(minutes=15))
    assert samples["llm_active_conversations"] == [({}, active)] and active >= 1
    assert samples["llm_database_up"] == [({}, 1.0)]


def test_models_beyond_the_cap_are_folded_into_other(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    write_records(engine, [_record(f"model-{i:02d}", KeySource.SERVER, cost_usd="0.01", at=now) for i in range(55)]
                  + [_record("model-00", KeySource.SERVER, cost_usd="0.01", at=now)])
    samples = _samples(_scrape(TestClient(make_app(_settings(sqlite_url, tmp_path), host_metrics=FakeHostMetrics()))))
    spend = {lb["model"]: v for lb, v in samples["llm_spend_usd_total"]}
    assert len(spend) == 51 and "other" in spend and "model-00" in spend
    assert sum(spend.values()) == pytest.approx(0.56)
    assert spend["other"] == pytest.approx(0.05)
    assert sum(v for _, v in samples["llm_requests_total"]) == 56
    engine.dispose()


def test_db_figures_are_cached_between_scrapes(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    clock = [100.0]
    app = make_app(_settings(sqlite_url, tmp_path, metrics_cache_seconds=2.0), host_metrics=FakeHostMetrics(),
                   clock=lambda: clock[0])
    client = TestClient(app)

    def requests_total() -> float:
        return sum(v for _, v in _samples(_scrape(client)).get("llm_requests_total", []))

    assert requests_total() == 0
    write_records(engine, [_record("gpt-4o-mini", KeySource.SERVER, cost_usd="0.01", at=datetime.now(UTC))])
    clock[0] += 1.0
    assert requests_total() == 0  # within the cache window: the database is not asked again
    clock[0] += 1.5
    assert requests_total() == 1
    engine.dispose()


def test_database_down_is_reported_not_raised(tmp_path):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/llm_monitor_missing_db"
    client = TestClient(make_app(_settings(url, tmp_path), host_metrics=FakeHostMetrics()))
    samples = _samples(_scrape(client))
    assert samples["llm_database_up"] == [({}, 0.0)]
    assert "llm_spend_usd_total" not in samples
    assert "host_cpu_seconds_total" in samples


def test_stack_process_metrics_come_from_pid_files(sqlite_url, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "chat_api.pid").write_text(f"{os.getpid()}\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "admin_ui.pid").write_text(str(dead.pid))
    (run / "garbage.pid").write_text("not a pid")
    client = TestClient(make_app(_settings(sqlite_url, tmp_path), host_metrics=FakeHostMetrics()))
    samples = _samples(_scrape(client))
    up = {lb["service"]: v for lb, v in samples["llm_process_up"]}
    assert up == {"chat_api": 1.0, "admin_ui": 0.0, "garbage": 0.0}
    rss = {lb["service"]: v for lb, v in samples["llm_process_resident_memory_bytes"]}
    assert set(rss) == {"chat_api"} and rss["chat_api"] > 0
    assert {lb["service"] for lb, _ in samples["llm_process_cpu_seconds_total"]} == {"chat_api"}


def test_chat_api_readiness(sqlite_url, tmp_path):
    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        up = TestClient(make_app(_settings(sqlite_url, tmp_path, chat_api_url=url), host_metrics=FakeHostMetrics()))
        assert _samples(_scrape(up))["llm_chat_api_ready"] == [({}, 1.0)]
    finally:
        server.shutdown()
        server.server_close()
    down = TestClient(make_app(_settings(sqlite_url, tmp_path), host_metrics=FakeHostMetrics()))
    assert _samples(_scrape(down))["llm_chat_api_ready"] == [({}, 0.0)]
