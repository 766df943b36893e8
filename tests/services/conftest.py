"""A chat_api process on real Postgres in front of the project's fake OpenAI server."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.processes import BIN, ROOT, free_port, start, stop

SERVER_KEY = "sk-server-0123456789abcdef"
EXTRA_MODELS = "fake-429,fake-500,fake-flaky,fake-slow,fake-stream-slow,fake-400"


@dataclass
class ChatApiProcess:
    url: str
    fake_url: str
    pg_url: str
    admin_token: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def issue_key(self, name: str, daily_usd: str | None = None) -> str:
        args = [str(BIN / "llmctl"), "keys", "create", "--name", name]
        if daily_usd is not None:
            args += ["--daily-usd", daily_usd]
        out = subprocess.run(args, env={**os.environ, **self.env}, cwd=ROOT, capture_output=True, text=True,
                             check=True)
        return out.stdout.strip().splitlines()[-1]

    def new_key(self, name: str = "pipeline") -> str:
        """A fresh client key through the admin API (faster than llmctl when a test needs many)."""
        return self.new_key_and_id(name)[0]

    def new_key_and_id(self, name: str = "pipeline") -> tuple[str, str]:
        import uuid

        r = httpx.post(self.url + "/admin/v1/keys", json={"name": f"{name}-{uuid.uuid4().hex[:8]}"},
                       headers={"Authorization": f"Bearer {self.admin_token}"})
        r.raise_for_status()
        return r.json()["key"], r.json()["item"]["id"]

    def flush_ledger(self) -> None:
        """Returns once the ledger writer has stored everything this process had queued."""
        httpx.post(self.url + "/admin/v1/ledger/flush", headers={"Authorization": f"Bearer {self.admin_token}"},
                   timeout=60).raise_for_status()

    def fake_requests(self) -> list[dict]:
        return httpx.get(self.fake_url.rsplit("/v1", 1)[0] + "/_fake/requests").json()

    def clear_fake(self) -> None:
        httpx.delete(self.fake_url.rsplit("/v1", 1)[0] + "/_fake/requests")


def start_chat_api(pg_url: str, fake_url: str, data_dir: Path, **extra_env: str):
    port = free_port()
    env = {"DATABASE_URL": pg_url, "OPENAI_API_KEY": SERVER_KEY, "OPENAI_BASE_URL": fake_url,
           "CHAT_API_PORT": str(port), "ADMIN_TOKEN": "admin-" + "a" * 40, "KEY_HASH_SECRET": "h" * 40,
           "DATA_DIR": str(data_dir), "EXTRA_MODELS": EXTRA_MODELS, "LOG_LEVEL": "DEBUG",
           "UPSTREAM_MAX_RETRIES": "2", **extra_env}
    log = data_dir / "chat_api.log"
    proc = start([str(BIN / "chat-api")], env=env, log=log, ready_url=f"http://127.0.0.1:{port}/healthz")
    return proc, ChatApiProcess(f"http://127.0.0.1:{port}", fake_url, pg_url, env["ADMIN_TOKEN"], log, env)


@pytest.fixture(scope="session")
def chat_api(pg_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    # The shared process's background poller first looks after an hour: tests that read a
    # background response step by step (queued → in_progress → completed), or count the
    # upstream's requests, must not race it. Polling is tested with replicas of their own
    # (tests/reliability/test_money_integrity.py).
    # The per-minute allowance is off here: the fuzz runs send well over 600 requests a
    # minute with the session's one client key, and the allowance slides (the previous
    # minute counts), so tests after them would meet 429s. Limits are tested on processes of
    # their own (test_pipeline, test_faults, e2e/test_rate_limit, the narrow gateway).
    proc, api = start_chat_api(pg_url, fake_openai, tmp_path_factory.mktemp("chat_api"), ALLOW_ANONYMOUS="true",
                               BACKGROUND_POLL_SECONDS="3600", RATE_LIMIT_PER_MINUTE="0")
    yield api
    stop(proc)


@pytest.fixture(scope="session")
def client_key(chat_api: ChatApiProcess) -> str:
    return chat_api.issue_key("tests")


