"""The monitor's /api/v1/system/* routes answer with the original bodies and types."""
from __future__ import annotations

import time
from datetime import datetime

import psutil
import pytest
from fastapi.testclient import TestClient

from domain.adapters.fakes import FakeHostMetrics
from domain.ports import HostSnapshot
from monitor.app import make_app
from monitor.psutil_host_metrics import PsutilHostMetrics
from monitor.settings import MonitorSettings


@pytest.fixture
def settings(tmp_path) -> MonitorSettings:
    return MonitorSettings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", stack_pid_dir=tmp_path / "run",
                           chat_api_url="http://127.0.0.1:9", cpu_sample_seconds=0.1)


@pytest.fixture
def real_client(settings):
    with TestClient(make_app(settings)) as client:  # the app's own PsutilHostMetrics, sampler running
        yield client


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_status_has_the_original_body(settings):
    host = FakeHostMetrics(HostSnapshot(cpu_percent=12.5, memory_percent=40.0, memory_available_bytes=8 * 1024**3))
    client = TestClient(make_app(settings, host_metrics=host))
    r = client.get("/api/v1/system/status")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "timestamp", "cpu_usage", "memory_usage", "memory_available_gb"}
    assert body["status"] == "healthy"
    assert (body["cpu_usage"], body["memory_usage"], body["memory_available_gb"]) == (12.5, 40.0, 8.0)
    _iso(body["timestamp"])


def test_status_with_real_host_metrics_has_sane_types(real_client):
    body = real_client.get("/api/v1/system/status").json()
    assert body["status"] == "healthy"
    for key in ("cpu_usage", "memory_usage", "memory_available_gb"):
        assert isinstance(body[key], float)
    assert 0 <= body["cpu_usage"] <= 100 and 0 < body["memory_usage"] <= 100
    assert body["memory_available_gb"] == pytest.approx(psutil.virtual_memory().available / 1024**3, rel=0.2)


@pytest.mark.parametrize("path", ["/api/v1/system/status", "/api/v1/system/info", "/api/v1/system/cpu",
                                  "/api/v1/system/memory", "/api/v1/system/disk"])
def test_collector_failure_is_a_503_unhealthy_body_not_a_traceback(settings, path):
    host = FakeHostMetrics(error=RuntimeError("psutil is gone"))
    client = TestClient(make_app(settings, host_metrics=host), raise_server_exceptions=False)
    r = client.get(path)
    assert r.status_code == 503
    body = r.json()
    assert set(body) == {"status", "timestamp", "error"}
    assert body["status"] == "unhealthy" and body["error"] == "psutil is gone"
    _iso(body["timestamp"])


def test_real_adapter_reports_unhealthy_when_its_sampler_stalls(settings, monkeypatch):
    host = PsutilHostMetrics(interval=0.05, max_age=0.3)
    host.start()
    try:
        client = TestClient(make_app(settings, host_metrics=host))
        deadline = time.monotonic() + 5
        while host._cpu_percent is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/api/v1/system/status").status_code == 200

        def broken(*_a, **_kw):
            raise OSError("/proc/stat unreadable")

        monkeypatch.setattr(psutil, "cpu_times", broken)
        deadline = time.monotonic() + 5
        r = client.get("/api/v1/system/status")
        while r.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            r = client.get("/api/v1/system/status")
        assert r.status_code == 503
        assert r.json()["status"] == "unhealthy" and "CPU sampler" in r.json()["error"]
    finally:
        host.stop()


def test_info_has_every_section(real_client):
    r = real_client.get("/api/v1/system/info")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"timestamp", "system", "cpu", "memory", "disk", "network", "process"}
    assert all(isinstance(body[k], dict) for k in body if k != "timestamp")
    assert body["system"]["platform"] and isinstance(body["system"]["python_version"], str)
    assert body["cpu"]["total_cores"] == psutil.cpu_count()
    assert len(body["cpu"]["cpu_usage_per_core"]) == psutil.cpu_count()
    assert body["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert body["disk"]["total_bytes"] > 0 and 0 <= body["disk"]["percentage"] <= 100
    assert isinstance(body["network"]["bytes_recv"], int)
    assert body["process"]["pid"] > 0 and body["process"]["memory_rss_bytes"] > 0


@pytest.mark.parametrize("key", ["cpu", "memory", "disk"])
def test_section_routes(real_client, key):
    r = real_client.get(f"/api/v1/system/{key}")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"timestamp", key} and isinstance(body[key], dict) and body[key]
    _iso(body["timestamp"])


def test_health_and_healthz(settings):
    client = TestClient(make_app(settings, host_metrics=FakeHostMetrics(error=RuntimeError("down"))))
    body = client.get("/api/v1/system/health").json()
    assert set(body) == {"status", "service", "timestamp"}
    assert body["status"] == "healthy" and body["service"] == "LLM Server"
    _iso(body["timestamp"])
    assert client.get("/healthz").json() == {"status": "ok"}
