"""A real Prometheus scrapes a real monitor process and stores its series."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import BIN, free_port, start, stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the prometheus binary is not installed"),
]


def prometheus_config(targets: dict[str, list[str]], interval: str = "1s") -> str:
    """A minimal prometheus.yml scraping ``{job: [host:port, ...]}`` every ``interval``."""
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(repr(t) for t in addrs)}]\n"
        for job, addrs in targets.items())
    return f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n{jobs}"


def start_prometheus(tmp_path: Path, targets: dict[str, list[str]]):
    """Prometheus on a free loopback port scraping ``targets``; returns (process, base URL)."""
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(targets))
    port = free_port()
    proc = start(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{port}"],
                 log=tmp_path / "prometheus.log", ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=30)
    return proc, f"http://127.0.0.1:{port}"


def query_until_present(base: str, query: str, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5).json()
        if body["status"] == "success" and body["data"]["result"]:
            return body["data"]["result"]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {query!r} series in Prometheus after {timeout}s: {body}")
        time.sleep(0.5)


@pytest.fixture
def monitor_target(pg_url, tmp_path):
    port = free_port()
    env = {"MONITOR_HOST": "127.0.0.1", "MONITOR_PORT": str(port), "DATABASE_URL": pg_url,
           "STACK_PID_DIR": str(tmp_path / "run"), "CHAT_API_URL": f"http://127.0.0.1:{free_port()}",
           "LOG_LEVEL": "WARNING"}
    proc = start([str(BIN / "monitor")], env=env, log=tmp_path / "monitor.log",
                 ready_url=f"http://127.0.0.1:{port}/healthz", timeout=30)
    yield f"127.0.0.1:{port}"
    stop(proc)


def test_prometheus_scrapes_the_monitor(monitor_target, tmp_path):
    proc, base = start_prometheus(tmp_path, {"monitor": [monitor_target]})
    try:
        up = query_until_present(base, "llm_database_up")
        assert [(r["metric"]["job"], r["metric"]["instance"]) for r in up] == [("monitor", monitor_target)]
        assert float(up[0]["value"][1]) == 1.0
        cpu = query_until_present(base, 'host_cpu_seconds_total{mode="idle"}')
        assert float(cpu[0]["value"][1]) > 0
        assert query_until_present(base, 'up{job="monitor"}')[0]["value"][1] == "1"
    finally:
        stop(proc)


@pytest.mark.e2e
def test_prometheus_scrapes_the_stack_after_chat_traffic(stack, tmp_path):
    """The monitor's spend equals the ledger's sums after real chat requests, and Prometheus
    sees both the monitor and every chat_api replica."""
    import psycopg

    headers = {"Authorization": f"Bearer {stack.client_key}"}
    for i in range(3):
        r = httpx.post(stack.base_url + "/api/v1/chat", headers=headers,
                       json={"user_prompt": f"프로메테우스 {i}", "model": "gpt-4.1-mini"}, timeout=30)
        assert r.status_code == 200, r.text
    stack.flush_ledgers()
    targets = {"monitor": [stack.monitor_url.split("//", 1)[1]],
               "chat_api": [u.split("//", 1)[1] for u in stack.chat_api_urls]}
    proc, base = start_prometheus(tmp_path, targets)
    try:
        deadline = time.monotonic() + 30
        while len(ups := query_until_present(base, 'up{job="chat_api"}')) < len(stack.chat_api_urls):
            assert time.monotonic() < deadline, ups
            time.sleep(0.5)
        assert sorted(r["value"][1] for r in ups) == ["1"] * len(stack.chat_api_urls)
        assert query_until_present(base, 'llm_gateway_requests_total{route="/api/v1/chat",status="200"}')
        # The ledger (and so the monitor) keeps the upstream's dated name (gpt-4.1-mini-2025-04-14).
        spend = query_until_present(base, 'sum(llm_spend_usd_total{model=~"gpt-4.1-mini.*"})')
        with psycopg.connect(stack.pg_url) as conn:
            nanos = conn.execute("SELECT sum(cost_nanos) FROM spend_ledger WHERE model LIKE 'gpt-4.1-mini%'").fetchone()[0]
        assert nanos > 0
        assert float(spend[0]["value"][1]) == pytest.approx(int(nanos) / 1e9, rel=1e-9)
    finally:
        stop(proc)
