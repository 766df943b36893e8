"""The whole stack as real processes, fronted by nginx rendered from infra/nginx.conf.

`stack` (session): the fake OpenAI server, a fresh migrated Postgres database, two chat-api
replicas sharing it (and the same admin token / key-hash secret), monitor, admin-ui when
installed, and nginx on a free loopback port. Logs go to test-artifacts/e2e/<run>/.
Every test under tests/e2e is marked `e2e`.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.database import create_database, drop_database, migrate
from tests.support.nginx import load_renderer
from tests.support.processes import BIN, ROOT, free_port, start_fake_openai, stop, wait_http
from tests.support.processes import start as start_process

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
EXTRA_MODELS = "fake-429,fake-500,fake-flaky,fake-slow,fake-stream-slow"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx") if Path(p).exists()), None)


@dataclass
class Stack:
    base_url: str                      # nginx: the only public entry
    chat_api_urls: list[str]           # the replicas, directly
    monitor_url: str
    admin_ui_url: str | None           # direct, with its /admin base path; None when admin-ui is not installed
    fake_openai_url: str               # .../v1
    pg_url: str
    admin_token: str
    admin_password: str
    env: dict[str, str]                # what every service was started with
    log_dir: Path
    client_key: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    nginx: str = ""
    admin_ui_addr: str = ""

    def start_router(self, name: str, *, rate: str, burst: int) -> tuple[subprocess.Popen, str]:
        """Another nginx in front of the same services, with its own rate-limit zone (so a
        test that drains it leaves the shared router alone)."""
        return start_router(self.nginx, self.log_dir / name, [u.split("//", 1)[1] for u in self.chat_api_urls],
                            self.monitor_url.split("//", 1)[1], self.admin_ui_addr, self.log_dir, rate=rate, burst=burst)

    def flush_ledgers(self) -> None:
        """Returns once every replica's ledger writer has stored what it had queued."""
        for url in self.chat_api_urls:
            httpx.post(url + "/admin/v1/ledger/flush", headers={"Authorization": f"Bearer {self.admin_token}"},
                       timeout=60).raise_for_status()

    @property
    def fake_root(self) -> str:
        """The fake server without /v1 (its /_fake/requests lives there)."""
        return self.fake_openai_url.rsplit("/v1", 1)[0]

    def issue_key(self, name: str, daily_usd: str | float | None = None, monthly_usd: str | float | None = None) -> str:
        """A client key issued with `llmctl keys create` (the key is stdout's last line)."""
        cmd = [str(BIN / "llmctl"), "keys", "create", "--name", name]
        if daily_usd is not None:
            cmd += ["--daily-usd", str(daily_usd)]
        if monthly_usd is not None:
            cmd += ["--monthly-usd", str(monthly_usd)]
        out = subprocess.run(cmd, env={**os.environ, **self.env}, cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"llmctl keys create failed ({out.returncode}): {out.stderr}")
        return out.stdout.strip().splitlines()[-1].strip()

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.client_key}"}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed: the e2e tests go through the nginx router (apt install nginx-light)")
    if not (BIN / "chat-api").exists():
        pytest.skip("chat-api is not installed in the virtualenv (make install)")

    log_dir = ARTIFACTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    pg_url = ""
    try:
        fake_proc, fake_url = start_fake_openai()
        procs["fake_openai"] = fake_proc
        pg_url = create_database("llm_e2e")
        migrate(pg_url)

        admin_token = secrets.token_urlsafe(24)
        admin_password = secrets.token_urlsafe(12)
        env = {
            "DATABASE_URL": pg_url,
            "ADMIN_TOKEN": admin_token,
            "KEY_HASH_SECRET": secrets.token_urlsafe(24),
            "OPENAI_API_KEY": "sk-server-test",
            "OPENAI_BASE_URL": fake_url,
            "EXTRA_MODELS": EXTRA_MODELS,
            "DATA_DIR": str(log_dir / "data"),
            "LOG_LEVEL": "INFO",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "ADMIN_PASSWORD": admin_password,
            "STACK_PID_DIR": str(log_dir / "run"),
        }

        chat_ports = [free_port(), free_port()]
        for i, port in enumerate(chat_ports):
            procs[f"chat_api_{i}"] = start([str(BIN / "chat-api")], env={**env, "CHAT_API_PORT": str(port)},
                                           log=log_dir / f"chat_api_{i}.log",
                                           ready_url=f"http://127.0.0.1:{port}/healthz", timeout=60)
        chat_api_urls = [f"http://127.0.0.1:{p}" for p in chat_ports]
        env["CHAT_API_URL"] = chat_api_urls[0]

        monitor_port = free_port()
        env["MONITOR_URL"] = f"http://127.0.0.1:{monitor_port}"
        if (BIN / "monitor").exists():
            procs["monitor"] = start([str(BIN / "monitor")], env={**env, "MONITOR_PORT": str(monitor_port)},
                                     log=log_dir / "monitor.log",
                                     ready_url=f"http://127.0.0.1:{monitor_port}/healthz", timeout=60)

        admin_port = free_port()
        admin_ui_url = None
        if (BIN / "admin-ui").exists() and _admin_ui_importable():
            procs["admin_ui"] = start([str(BIN / "admin-ui")], env={**env, "ADMIN_UI_PORT": str(admin_port)},
                                      log=log_dir / "admin_ui.log",
                                      ready_url=f"http://127.0.0.1:{admin_port}/admin/_stcore/health", timeout=90)
            admin_ui_url = f"http://127.0.0.1:{admin_port}/admin/"

        admin_ui = f"127.0.0.1:{admin_port}"
        nginx_proc, base_url = start_router(nginx, log_dir / "nginx", [u.split("//", 1)[1] for u in chat_api_urls],
                                            f"127.0.0.1:{monitor_port}", admin_ui, log_dir)
        procs["nginx"] = nginx_proc

        s = Stack(base_url=base_url, chat_api_urls=chat_api_urls,
                  monitor_url=f"http://127.0.0.1:{monitor_port}", admin_ui_url=admin_ui_url,
                  fake_openai_url=fake_url, pg_url=pg_url, admin_token=admin_token, admin_password=admin_password,
                  env=env, log_dir=log_dir, processes=procs, nginx=nginx, admin_ui_addr=admin_ui)
        s.client_key = s.issue_key("e2e")
        # /readyz through nginx: the replicas see the database.
        wait_http(f"{s.base_url}/readyz", timeout=30)
        yield s
    finally:
        for name in reversed(list(procs)):
            stop(procs[name])
        if pg_url:
            drop_database(pg_url)


def start_router(nginx: str, prefix: Path, chat_api: list[str], monitor: str, admin_ui: str, log_dir: Path, *,
                 rate: str = "20r/s", burst: int = 50) -> tuple[subprocess.Popen, str]:
    """An nginx router rendered from the project's template in front of the given services;
    returns the process and its base URL. Each router has its own rate-limit zone."""
    renderer = load_renderer()
    renderer.prepare_prefix(prefix)
    listen = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(renderer.render(renderer.native_values(
        prefix=prefix, listen=listen, chat_api=chat_api, monitor=monitor, admin_ui=admin_ui, rate=rate, burst=burst,
        access_log=str(prefix / "access.log"), error_log=str(prefix / "error.log"))))
    proc = start([nginx, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                 log=log_dir / f"{prefix.name}.log", ready_url=f"http://127.0.0.1:{listen}/healthz", timeout=30)
    return proc, f"http://127.0.0.1:{listen}"


def start(cmd: list[str], *, log: Path, **kwargs) -> subprocess.Popen:
    """tests.support.processes.start, failing with the tail of the process's log."""
    try:
        return start_process(cmd, log=log, **kwargs)
    except RuntimeError as exc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else "(no log)"
        raise RuntimeError(f"{Path(cmd[0]).name} did not start: {exc}\n--- {log} ---\n{tail}") from None


def _admin_ui_importable() -> bool:
    out = subprocess.run([sys.executable, "-c", "import admin_ui.main"], cwd=ROOT, capture_output=True, timeout=60)
    return out.returncode == 0
