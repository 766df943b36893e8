"""Hostile tokens cannot grow the process; secrets the service writes are private; every
logger's records are redacted."""
from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import stop


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def fresh_api(pg_url, fake_openai, tmp_path_factory) -> Iterator[tuple[subprocess.Popen, ChatApiProcess, Path]]:
    logs = tmp_path_factory.mktemp("secrets")
    data_dir = logs / "data" / "nested"  # created by chat_api itself
    # no ADMIN_TOKEN / KEY_HASH_SECRET: chat_api generates both into DATA_DIR
    proc, api = start_chat_api(pg_url, fake_openai, logs, DATA_DIR=str(data_dir), ADMIN_TOKEN="", KEY_HASH_SECRET="")
    yield proc, api, data_dir
    stop(proc)



@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_two_hundred_megabyte_tokens_do_not_grow_the_process(fresh_api):
    proc, api, _ = fresh_api
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for _ in range(20):  # warm up: allocator pools, first-request caches
            client.post("/v1/chat/completions", headers={"Authorization": "Bearer llms-warm"}, json={})
        before = _rss_mb(proc.pid)
        for i in range(200):
            token = "llms-" + chr(65 + i % 26) * (1024 * 1024)
            r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_client_key"
        grown = _rss_mb(proc.pid) - before
    print(f"RSS growth after 200 one-megabyte tokens: {grown:.1f} MB")
    assert grown < 64, f"RSS grew by {grown:.0f} MB"


def test_secret_files_the_service_writes_are_private(fresh_api):
    _, _, data_dir = fresh_api
    for name in ("admin_token", "key_hash_secret"):
        mode = stat.S_IMODE((data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700


def test_a_kept_secret_file_others_can_read_is_made_private(tmp_path):
    from domain.adapters.secret_files import load_or_create_secret

    path = tmp_path / "admin_token"
    path.write_text("kept-token-value\n")
    path.chmod(0o644)
    assert load_or_create_secret(path, None) == "kept-token-value"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


_LOG_PROGRAM = r"""
import logging, logging.config, sys
from domain.adapters.log_redaction import logging_config, install_redaction
if sys.argv[1] == "config":
    logging.config.dictConfig(logging_config("DEBUG"))
else:
    install_redaction()  # an app served without logging_config
logging.getLogger("some.library").warning("sent Authorization: Bearer sk-live-abcdefgh12345678 to upstream")
logging.getLogger("some.library").info("library chatter at info")
logging.getLogger("chat_api.x").info("client key llms-ABCDEFGH12345678 used")
logging.getLogger("domain.y").error("openai_api_key=sk-proj-zzzzzzzzzzzz failed")
logging.getLogger("monitor.z").error("cannot connect to postgresql+psycopg://llm:pg-Secret-99@db:5432/llm")
try:
    raise ValueError("boom with sk-inexception-12345678")
except ValueError:
    logging.getLogger("anything").exception("oops")
"""


@pytest.mark.parametrize("setup", ["config", "install"])
def test_every_loggers_records_are_redacted(setup):
    out = subprocess.run([sys.executable, "-c", _LOG_PROGRAM, setup], capture_output=True, text=True, check=True)
    log = out.stderr
    assert "sk-live" not in log and "llms-ABCDEFGH" not in log and "sk-proj" not in log
    assert "sk-inexception" not in log and "pg-Secret-99" not in log
    assert "postgresql+psycopg://llm:[REDACTED]@db:5432/llm" in log
    assert "some.library" in log and "[REDACTED]" in log and "Traceback" in log
    if setup == "config":
        assert "client key llms-[REDACTED] used" in log  # our loggers at LOG_LEVEL
        assert "library chatter" not in log  # libraries at WARNING: their DEBUG quotes headers
