"""Upstream failover through nginx with two chat-api replicas: an Azure-shaped primary and an
OpenAI secondary (the project's fake, as processes); the primary dies under load."""
from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.conftest import nginx_binary, start
from tests.support.database import create_database, drop_database, migrate
from tests.support.fake_upstreams import FakeUpstream
from tests.support.nginx import load_renderer
from tests.support.processes import BIN, ROOT, free_port, stop

pytestmark = pytest.mark.e2e
KEYS = {"AZ_KEY": "az-e2e-key", "OA_KEY": "sk-oa-e2e-key"}


@dataclass
class RoutedStack:
    base_url: str
    pg_url: str
    env: dict[str, str]
    primary: FakeUpstream
    secondary: FakeUpstream


@pytest.fixture(scope="module")
def routed_stack(tmp_path_factory) -> Iterator[RoutedStack]:
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed")
    tmp = tmp_path_factory.mktemp("routed-e2e")
    fake_env = {"FAKE_LATENCY_MS": "20"}
    primary, secondary = FakeUpstream("az", env=fake_env).start(), FakeUpstream("oa", env=fake_env).start()
    pg_url = create_database("llm_e2e_routing")
    migrate(pg_url)
    (tmp / "upstreams.yaml").write_text(f"""
upstreams:
  - {{name: az, kind: azure, base_url: "{primary.root}", api_key_env: AZ_KEY, api_version: "2024-10-21",
      models: {{gpt-4o-mini: kc-gpt-4o-mini}}}}
  - {{name: oa, kind: openai, base_url: "{secondary.openai_base}", api_key_env: OA_KEY, models: [gpt-4o-mini],
      priority: 1}}
""")
    env = {"DATABASE_URL": pg_url, "ADMIN_TOKEN": "t" * 40, "KEY_HASH_SECRET": "h" * 40, "DATA_DIR": str(tmp),
           "UPSTREAMS_FILE": str(tmp / "upstreams.yaml"), "EXTRA_MODELS": "", "RATE_LIMIT_PER_MINUTE": "0",
           "TOKENS_PER_MINUTE": "0", "FORWARDED_ALLOW_IPS": "127.0.0.1", **KEYS}
    procs = []
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            procs.append(start([str(BIN / "chat-api")], env={**env, "CHAT_API_PORT": str(port)},
                               log=tmp / f"chat_api_{i}.log", ready_url=f"http://127.0.0.1:{port}/healthz",
                               timeout=60))
        renderer = load_renderer()
        prefix = tmp / "nginx"
        renderer.prepare_prefix(prefix)
        listen = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(renderer.render(renderer.native_values(
            prefix=prefix, listen=listen, chat_api=[f"127.0.0.1:{p}" for p in ports],
            monitor=f"127.0.0.1:{free_port()}", admin_ui=f"127.0.0.1:{free_port()}", rate="1000r/s", burst=1000,
            error_log=str(tmp / "nginx_error.log"))))
        procs.append(start([nginx, "-c", str(conf), "-p", str(prefix), "-e", str(tmp / "nginx_error.log"),
                            "-g", "daemon off;"], log=Path(tmp / "nginx.log"),
                           ready_url=f"http://127.0.0.1:{listen}/healthz", timeout=30))
        yield RoutedStack(f"http://127.0.0.1:{listen}", pg_url, env, primary, secondary)
    finally:
        for proc in reversed(procs):
            stop(proc)
        primary.stop()
        secondary.stop()
        drop_database(pg_url)


def test_the_primary_dying_under_load_costs_no_non_streamed_request(routed_stack):
    import os
    import subprocess

    s = routed_stack
    out = subprocess.run([str(BIN / "llmctl"), "keys", "create", "--name", "failover-e2e"], cwd=ROOT, check=True,
                         env={**os.environ, **s.env}, capture_output=True, text=True)
    key = out.stdout.strip().splitlines()[-1]
    total, killed_at = 160, 50
    served: list[tuple[int, str]] = []
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total:
            i = sent
            sent += 1
            if i == killed_at:
                s.primary.stop(signal.SIGKILL)
            r = await client.post("/v1/chat/completions", json={
                "model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": f"복제 {i}"}]})
            served.append((r.status_code, r.json().get("system_fingerprint", "") if r.status_code == 200 else r.text))

    async def run() -> None:
        async with httpx.AsyncClient(base_url=s.base_url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=60) as client:
            await asyncio.gather(*(worker(client) for _ in range(8)))

    try:
        asyncio.run(run())
    finally:
        s.primary.start()
    assert [x for x in served if x[0] != 200] == []
    by = Counter(fp for _, fp in served)
    assert by["fp_az"] >= killed_at - 8 and by["fp_oa"] >= total - killed_at - 8 and sum(by.values()) == total
    deadline = time.monotonic() + 20
    while True:  # one ledger row per request, each naming the upstream that served it
        with psycopg.connect(s.pg_url) as conn:
            ledger = dict(conn.execute("SELECT upstream, count(*) FROM spend_ledger GROUP BY 1").fetchall())
        if sum(ledger.values()) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ledger == {"az": by["fp_az"], "oa": by["fp_oa"]}
