"""Failover under load: an Azure-shaped primary and an OpenAI secondary (both the project's
fake upstream, as processes) behind one chat-api process on PostgreSQL.

A paced load of N requests at concurrency C runs for about ``--seconds``; the primary is
killed (SIGKILL) when a third of the requests have been sent and started again on the same
port at two thirds. Reported: client errors (non-streamed, and streams that did not end
with ``[DONE]``), requests served per upstream (from the answers, cross-checked with the
ledger's ``upstream`` column), and the time from the primary being back to the first
request it served.

    .venv/bin/python bench/failover.py [--requests 500] [--concurrency 8] [--seconds 60]
                                       [--stream-share 0.2] [--latency-ms 40]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's own process and database helpers (tests/support)
from tests.support.database import create_database, drop_database, migrate  # noqa: E402
from tests.support.fake_upstreams import FakeUpstream  # noqa: E402
from tests.support.processes import BIN, free_port, start, stop  # noqa: E402

KEYS = {"AZ_KEY": "az-bench-key", "OA_KEY": "sk-oa-bench-key"}


async def main(args: argparse.Namespace) -> dict:
    fake_env = {"FAKE_LATENCY_MS": str(args.latency_ms), "FAKE_CHUNK_MS": "20"}
    az, oa = FakeUpstream("az", env=fake_env).start(), FakeUpstream("oa", env=fake_env).start()
    pg = create_database("llm_failover")
    migrate(pg)
    tmp = Path(tempfile.mkdtemp(prefix="failover-"))
    (tmp / "upstreams.yaml").write_text(f"""
upstreams:
  - {{name: az, kind: azure, base_url: "{az.root}", api_key_env: AZ_KEY, api_version: "2024-10-21",
      models: {{gpt-4o-mini: kc-gpt-4o-mini}}, priority: 0}}
  - {{name: oa, kind: openai, base_url: "{oa.openai_base}", api_key_env: OA_KEY, models: [gpt-4o-mini],
      priority: 1}}
""")
    port = free_port()
    env = {"DATABASE_URL": pg, "CHAT_API_PORT": str(port), "DATA_DIR": str(tmp), "ADMIN_TOKEN": "a" * 40,
           "KEY_HASH_SECRET": "h" * 40, "UPSTREAMS_FILE": str(tmp / "upstreams.yaml"), "LOG_LEVEL": "WARNING",
           "RATE_LIMIT_PER_MINUTE": "0", "TOKENS_PER_MINUTE": "0", "UPSTREAM_TIMEOUT_SECONDS": "10", **KEYS}
    api = start([str(BIN / "chat-api")], env=env, log=tmp / "chat_api.log",
                ready_url=f"http://127.0.0.1:{port}/healthz")
    try:
        out = subprocess.run([str(BIN / "llmctl"), "keys", "create", "--name", "failover"], cwd=ROOT, check=True,
                             env={**os.environ, **env}, capture_output=True, text=True)
        key = out.stdout.strip().splitlines()[-1]
        return await load(args, f"http://127.0.0.1:{port}", key, az, pg)
    finally:
        stop(api)
        az.stop()
        oa.stop()
        drop_database(pg)


async def load(args: argparse.Namespace, url: str, key: str, az: FakeUpstream, pg: str) -> dict:
    results: list[dict] = []
    sent = 0
    interval = args.seconds * args.concurrency / args.requests  # per worker, to pace the run
    t0 = time.monotonic()
    events: dict[str, float] = {}
    lock = asyncio.Lock()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        # spread evenly, so some streams are in flight whenever the primary dies
        stream = args.stream_share > 0 and i % max(1, round(1 / args.stream_share)) == 0
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"장애 조치 시험 {i}"}],
                "max_tokens": 8, "stream": stream}
        started = time.monotonic() - t0
        served, status, complete = None, 0, False
        try:
            if stream:
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    status = r.status_code
                    text = ""
                    async for chunk in r.aiter_text():
                        text += chunk
                    complete = status == 200 and "data: [DONE]" in text
                    # chunks name the model: Azure's fake answers with its deployment's name
                    served = ("az" if '"model":"kc-gpt-4o-mini"' in text
                              else "oa" if '"model":"gpt-4o-mini"' in text else None)
            else:
                r = await client.post("/v1/chat/completions", json=body)
                status = r.status_code
                complete = status == 200
                served = r.json().get("system_fingerprint", "")[3:] if complete else None
        except httpx.HTTPError as exc:
            status = -1
            served = type(exc).__name__
        results.append({"i": i, "stream": stream, "t": started, "end": time.monotonic() - t0, "status": status,
                        "complete": complete, "served": served})

    async def worker() -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=60) as client:
            while True:
                async with lock:
                    if sent >= args.requests:
                        return
                    i = sent
                    sent += 1
                    if i == args.requests // 3:
                        az.stop(signal.SIGKILL)
                        events["primary_killed"] = time.monotonic() - t0
                    if i == 2 * args.requests // 3:
                        await asyncio.to_thread(az.start)  # back on the same port, ready to answer
                        events["primary_back"] = time.monotonic() - t0
                began = time.monotonic()
                await one(client, i)
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    plain = [r for r in results if not r["stream"]]
    streams = [r for r in results if r["stream"]]
    back = events["primary_back"]
    recovered = min((r["t"] for r in results if r["served"] == "az" and r["t"] >= back), default=None)
    deadline = time.monotonic() + 20
    while True:
        with psycopg.connect(pg) as conn:
            ledger = dict(conn.execute("SELECT coalesce(upstream, '-'), count(*) FROM spend_ledger "
                                       "GROUP BY 1").fetchall())
        if sum(ledger.values()) >= len(results) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    during = [r for r in plain if events["primary_killed"] <= r["t"] < back]
    return {
        "requests": len(results), "concurrency": args.concurrency, "stream_share": args.stream_share,
        "seconds": round(max(r["end"] for r in results), 1), "upstream_latency_ms": args.latency_ms,
        "primary_killed_at_s": round(events["primary_killed"], 2), "primary_back_at_s": round(back, 2),
        "non_streamed": {"total": len(plain), "errors": sum(1 for r in plain if not r["complete"]),
                         "during_outage": len(during),
                         "errors_during_outage": sum(1 for r in during if not r["complete"])},
        "streams": {"total": len(streams), "incomplete": sum(1 for r in streams if not r["complete"]),
                    "incomplete_started_before_kill": sum(1 for r in streams if not r["complete"]
                                                          and r["t"] < events["primary_killed"])},
        "served_by_answers": dict(Counter(str(r["served"]) for r in results)),
        "served_by_ledger": ledger,
        "statuses": dict(Counter(r["status"] for r in results)),
        "time_to_recover_s": None if recovered is None else round(recovered - back, 2),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--stream-share", type=float, default=0.2)
    ap.add_argument("--latency-ms", type=int, default=40)
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2, ensure_ascii=False))
