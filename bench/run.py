"""`make bench`: the gateway's own benchmark, against the fake upstream, in one run.

Everything is a ratio taken in one run on one machine, never an absolute promise: the
machine is shared and noisy. Layout (2 cores): the gateway under test is pinned to CPU 0;
the fake upstream (tests/support/fake_openai.py), wrk and this script to the last CPU.
PostgreSQL is a system service and floats; its CPU for our database is reported apart.

Measures, for POST /v1/chat/completions (client key, budget reservation, ledger row) and
POST /api/v1/chat (server-side history of 10 seeded turns, the turn persisted):
  * saturation (upstream answers at once): req/s and CPU microseconds per request of the
    gateway's process tree (from /proc), plus PostgreSQL backend CPU for our database;
  * latency at ONE connection with the upstream at 50 ms: p50/p99 added over direct;
  * streaming: time to first byte and chunk inter-arrival, gateway vs direct;
  * memory: gateway RSS before and after a soak of N requests after warm-up;
  * scale: one replica vs two behind nginx (infra/nginx.conf rendered for loopback).
With --compare, LiteLLM Proxy (scripts/litellm-venv.sh, its own venv) runs the same
saturation and latency measurements and every req/s is also given as a ratio to it.

    .venv/bin/python bench/run.py [--compare] [--seconds 8] [--conc 32] [--soak-requests 20000]
    .venv/bin/python bench/run.py --profile      # py-spy on /v1/chat/completions only
    .venv/bin/python bench/run.py --profile --profile-route original   # /api/v1/chat, 10 stored turns
    .venv/bin/python bench/run.py --quick        # saturation rows only (comparing levers), no file written

Writes bench/results/<date>.json (<date>-compare.json with --compare).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's own process and database helpers (tests/support)
from tests.support.database import ADMIN_URL, create_database, drop_database  # noqa: E402
from tests.support.processes import free_port  # noqa: E402
from tests.support.processes import wait_http as wait_ready  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
LITELLM_VENV = ROOT / ".bench-venv" / "litellm"
NCPU = os.cpu_count() or 2
GATEWAY_CPU = "0"
LOAD_CPU = str(NCPU - 1)
SERVER_KEY = "sk-bench-server-key"
LITELLM_MASTER = "sk-bench-master-" + "0" * 32
MODEL = "gpt-4o-mini"
SYSTEM = "당신은 친절한 프로그래밍 튜터입니다."
PROMPT = "Python의 특징을 설명해주세요."
OPENAI_BODY = {"model": MODEL, "max_tokens": 100,
               "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]}
UPSTREAM_LATENCY_MS = 50
CHUNK_MS = 20
SOAK_TARGET = 200_000  # issue 18: flat memory over this many requests (make soak)

# -- processes ---------------------------------------------------------------------------

_started: list[subprocess.Popen] = []


def spawn(cmd: list[str], *, env: dict[str, str] | None = None, cpu: str | None = None,
          log: Path | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the process
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                         start_new_session=True)
    _started.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    if p in _started:
        _started.remove(p)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu(pid: int) -> float:
    """utime+stime (s) of a process and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = _stat(p)
            total += (int(f[11]) + int(f[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total


def tree_rss_mb(pid: int) -> float:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(_stat(p)[21]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / 2**20


def pids_cpu(pids: list[int]) -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in pids:
        try:
            f = _stat(p)
            out[p] = (int(f[11]) + int(f[12])) / tick
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return out


# -- database ------------------------------------------------------------------------------

class Database:
    """A fresh database for the run, migrated, with one budgeted client key."""

    def __init__(self) -> None:
        self.url = create_database("llm_bench")
        self.name = self.url.rsplit("/", 1)[1]
        self.data_dir = Path(tempfile.mkdtemp(prefix="llm-bench-"))
        self.env = {"DATABASE_URL": self.url, "KEY_HASH_SECRET": "bench-key-hash-secret-" + "k" * 32,
                    "ADMIN_TOKEN": "bench-admin-token-" + "a" * 32, "DATA_DIR": str(self.data_dir),
                    "LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_MINUTE": "0", "TOKENS_PER_MINUTE": "0", "OPENAI_API_KEY": SERVER_KEY,
                    # one key is the whole load here: no fairness share among clients
                    "UPSTREAM_CLIENT_SHARE": "1"}
        env = {**os.environ, **self.env}
        subprocess.run([str(BIN / "llmctl"), "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        # Caps far above what the run spends: every request reserves and settles its budget.
        out = subprocess.run([str(BIN / "llmctl"), "keys", "create", "--name", "bench", "--daily-usd", "1000000",
                              "--monthly-usd", "10000000"], env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        self.client_key = out.strip().splitlines()[-1].strip()

    def backend_pids(self) -> list[int]:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,)).fetchall()
        return [r[0] for r in rows]

    def count(self, table: str) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]

    def drop(self) -> None:
        drop_database(self.url)
        shutil.rmtree(self.data_dir, ignore_errors=True)


# -- the processes under test ------------------------------------------------------------

def start_upstream(latency_ms: float, chunk_ms: float, cpu: str | None = LOAD_CPU) -> tuple[subprocess.Popen, int]:
    port = free_port()
    p = spawn([sys.executable, str(ROOT / "tests/support/fake_openai.py"), "--port", str(port)], cpu=cpu,
              env={"FAKE_LATENCY_MS": str(latency_ms), "FAKE_CHUNK_MS": str(chunk_ms)})
    wait_ready(f"http://127.0.0.1:{port}/v1/models", timeout=60, proc=p)
    return p, port


def start_gateway(db: Database, upstream_port: int, cpu: str | None = GATEWAY_CPU,
                  log: Path | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**db.env, "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1", "CHAT_API_PORT": str(port),
           "CHAT_API_HOST": "127.0.0.1", "LEDGER_SPOOL_PATH": str(db.data_dir / f"spool-{port}.sqlite3"),
           # every measured /api/v1/chat request adds a turn to the one bench conversation: the
           # replay is held at the 10 turns the history row is about (the default cap is 50)
           "HISTORY_MAX_TURNS": "10"}
    p = spawn([str(BIN / "chat-api")], env=env, cpu=cpu, log=log)
    wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=p)
    return p, port


def start_litellm(upstream_port: int, log: Path | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {"UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/v1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": LITELLM_MASTER,
           "PATH": f"{LITELLM_VENV / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("DATABASE_URL", None)
    p = spawn([str(LITELLM_VENV / "bin" / "litellm"), "--config", str(ROOT / "bench" / "litellm_config.yaml"),
               "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"], env=env, cpu=GATEWAY_CPU,
              log=log)
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", timeout=180, proc=p)
    return p, port


def start_nginx(replicas: list[int], workdir: Path) -> tuple[subprocess.Popen, int]:
    """The project's router template, rendered for loopback, with its per-address rate
    limit lifted (wrk is one address) and no access log."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import render_nginx  # type: ignore[import-not-found]

    port = free_port()
    render_nginx.prepare_prefix(workdir)
    values = render_nginx.native_values(prefix=workdir, listen=port, chat_api=[f"127.0.0.1:{r}" for r in replicas],
                                        monitor="127.0.0.1:9", admin_ui="127.0.0.1:9", rate="1000000r/s",
                                        burst=100000, conn_per_address=65535, access_log="off",
                                        error_log=str(workdir / "error.log"))
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx.render(values))
    p = spawn(["nginx", "-c", str(conf), "-g", "daemon off;"])
    wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=p)
    return p, port


# -- load ------------------------------------------------------------------------------------

def wrk(url: str, body: dict[str, Any] | None, headers: dict[str, str], conc: int, seconds: float,
        cpu: str | None = LOAD_CPU, threads: int = 1) -> dict[str, Any]:
    """POST ``body`` (or GET when it is None) for ``seconds``."""
    with tempfile.TemporaryDirectory() as d:
        body_path = Path(d) / "body.json"
        body_path.write_bytes(json.dumps(body, ensure_ascii=False).encode())
        lua = ["wrk.method = 'GET'"] if body is None else [
            "wrk.method = 'POST'",
            f"local f = assert(io.open({json.dumps(str(body_path))}, 'rb'))", "wrk.body = f:read('*a')", "f:close()"]
        for k, v in {"Content-Type": "application/json", **headers}.items():
            lua.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
        script = Path(d) / "post.lua"
        script.write_text("\n".join(lua) + "\n")
        cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def _ms(token: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", token)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    res: dict[str, Any] = {"raw": out}
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(x) for x in m.groups()) if m else 0
    res["errors"] = errors
    return res


def measured(url: str, body: dict[str, Any] | None, headers: dict[str, str], conc: int, seconds: float,
             proc: subprocess.Popen | None, db: Database | None = None, warmup: float = 2) -> dict[str, Any]:
    """A warm-up, then a measured wrk run with the CPU the target (and our PostgreSQL
    backends) spent on it."""
    if warmup:
        wrk(url, body, headers, conc, warmup)
    pg0 = pids_cpu(db.backend_pids()) if db else {}
    c0 = tree_cpu(proc.pid) if proc else 0.0
    r = wrk(url, body, headers, conc, seconds)
    c1 = tree_cpu(proc.pid) if proc else 0.0
    n = max(r["requests"], 1)
    r["cpu_us_req"] = round((c1 - c0) / n * 1e6, 1) if proc else None
    if db:
        pg1 = pids_cpu(db.backend_pids())
        r["db_cpu_us_req"] = round(sum(v - pg0.get(p, 0.0) for p, v in pg1.items()) / n * 1e6, 1)
    if r["errors"] or not r["requests"]:
        print(f"  ! {url}: {r['errors']} errors\n{r['raw']}", file=sys.stderr)
    return {k: v for k, v in r.items() if k != "raw"}


async def _stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                       headers: dict[str, str]) -> tuple[float, list[float]]:
    """(TTFB ms, arrival times ms of the content-bearing SSE events)."""
    t0 = time.perf_counter()
    ttfb, content_times, buf = None, [], b""
    async with client.stream("POST", url, json=body, headers=headers) as r:
        r.raise_for_status()
        async for chunk in r.aiter_raw():
            now = (time.perf_counter() - t0) * 1000
            if ttfb is None:
                ttfb = now
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                        data = json.loads(line[5:])
                        choices = data.get("choices") or []
                        if choices and (choices[0].get("delta") or {}).get("content"):
                            content_times.append(now)
    return ttfb or float("nan"), content_times


def stream_probe(url: str, headers: dict[str, str], n: int) -> dict[str, Any]:
    body = {**OPENAI_BODY, "stream": True}

    async def go() -> tuple[list[float], list[float]]:
        ttfbs, gaps = [], []
        async with httpx.AsyncClient(timeout=30) as client:
            await _stream_once(client, url, body, headers)  # warm the connection
            for _ in range(n):
                ttfb, times = await _stream_once(client, url, body, headers)
                ttfbs.append(ttfb)
                gaps.extend(b - a for a, b in itertools.pairwise(times))
        return ttfbs, gaps

    ttfbs, gaps = asyncio.run(go())
    return {"ttfb_p50_ms": round(statistics.median(ttfbs), 2), "gap_p50_ms": round(statistics.median(gaps), 2),
            "gap_p99_ms": round(pctl(gaps, 99), 2), "gaps": len(gaps)}


def pctl(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def seed_history(port: int, key: str, conversation: str, turns: int) -> dict[str, Any]:
    body = history_body(conversation)
    with httpx.Client(timeout=30) as c:
        for _ in range(turns):
            r = c.post(f"http://127.0.0.1:{port}/api/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            last = r.json()
    return last


def history_body(conversation: str) -> dict[str, Any]:
    return {"request_id": conversation, "system_prompt": SYSTEM, "user_prompt": PROMPT, "max_tokens": 100,
            "model": MODEL}


# -- profile ---------------------------------------------------------------------------------

def top_frames(collapsed: str, n: int = 15) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(self, inclusive) share of samples per frame from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    total = max(total, 1)
    return ([(f, 100 * c / total) for f, c in own.most_common(n)],
            [(f, 100 * c / total) for f, c in incl.most_common(n * 3)])


def profile(args: argparse.Namespace, db: Database, stamp: str) -> None:
    spy = BIN / "py-spy"
    if not spy.exists():
        sys.exit("py-spy is not installed in the venv (make install)")
    up, up_port = start_upstream(0, 0)
    gw, port = start_gateway(db, up_port)
    headers = {"Authorization": f"Bearer {db.client_key}"}
    if args.profile_route == "original":
        # the /api/v1/chat row of the bench: one conversation seeded to 10 stored turns, then replayed
        conversation = f"bench-conv-{uuid.uuid4().hex[:8]}"
        seed_history(port, db.client_key, conversation, 10)
        url, body, label = f"http://127.0.0.1:{port}/api/v1/chat", history_body(conversation), "original"
    else:
        url, body, label = f"http://127.0.0.1:{port}/v1/chat/completions", OPENAI_BODY, "openai"
    try:
        wrk(url, body, headers, args.conc, 3)
        out = RESULTS / f"{stamp}-profile-{label}.txt"
        rec = subprocess.Popen([str(spy), "record", "--pid", str(gw.pid), "--subprocesses", "--format", "raw",
                                "--rate", "250", "--gil", "--duration", str(round(args.seconds) + 1), "--nonblocking", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = wrk(url, body, headers, args.conc, args.seconds)
        rec.wait(timeout=60)
        # frames name files by absolute path; keep the results free of this machine's paths
        text = re.sub(r"\S*?/site-packages/", "", out.read_text()).replace(str(ROOT) + "/", "")
        out.write_text(re.sub(r"/\S*?/lib/python3\.\d+/", "", text))
        print(f"profiled {url.split(str(port), 1)[1]}: {r['rps']:.0f} req/s under py-spy, {r['errors']} errors; "
              f"collapsed stacks in {out.relative_to(ROOT)}")
        own, incl = top_frames(out.read_text())
        print("\n(samples of the thread holding the GIL: Python CPU, not time spent waiting)")
        print("top frames by self time (% of samples):")
        for f, pct in own:
            print(f"  {pct:5.1f}%  {f}")
        print("\ntop frames by inclusive time (project code and libraries, % of samples):")
        shown = 0
        for f, pct in incl:
            if any(s in f for s in ("chat_api", "domain/", "starlette", "fastapi", "sqlalchemy", "openai", "httpx",
                                    "pydantic", "prometheus", "psycopg", "uvicorn")):
                print(f"  {pct:5.1f}%  {f}")
                shown += 1
                if shown >= 30:
                    break
    finally:
        stop(gw)
        stop(up)


# -- the run -----------------------------------------------------------------------------

def quick(args: argparse.Namespace, db: Database) -> None:
    """The saturation rows of the gateway only (req/s, CPU per request, PostgreSQL CPU per
    request), ``--repeat`` times: enough to compare two builds of the hot path side by side."""
    key = {"Authorization": f"Bearer {db.client_key}"}
    conversation = f"bench-conv-{uuid.uuid4().hex[:8]}"
    up, up_port = start_upstream(0, 0)
    try:
        gw, port = start_gateway(db, up_port)
        try:
            base = f"http://127.0.0.1:{port}"
            seed_history(port, db.client_key, conversation, 10)
            for _ in range(args.repeat):
                for name, url, body in (("/v1/chat/completions", f"{base}/v1/chat/completions", OPENAI_BODY),
                                        ("/api/v1/chat +history", f"{base}/api/v1/chat", history_body(conversation))):
                    r = measured(url, body, key, args.conc, args.seconds, gw, db)
                    print(f"{name:<24}{r['rps']:>8.0f} req/s{r['cpu_us_req']:>8.0f} us CPU/req"
                          f"{r['db_cpu_us_req']:>7.0f} us PostgreSQL/req{r['errors']:>5} errors", flush=True)
        finally:
            stop(gw)
    finally:
        stop(up)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": NCPU, "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg()[0], "memory_gb": round(os.sysconf("SC_PAGE_SIZE")
                                                                        * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run(args: argparse.Namespace, db: Database) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="llm-bench-logs-"))
    key = {"Authorization": f"Bearer {db.client_key}"}
    direct_key = {"Authorization": f"Bearer {SERVER_KEY}"}
    lite_key = {"Authorization": f"Bearer {LITELLM_MASTER}"}
    conversation = f"bench-conv-{uuid.uuid4().hex[:8]}"
    res: dict[str, Any] = {"saturate": {}, "latency": {}, "stream": {}, "memory": {}, "scale": {}}
    sat, lat = res["saturate"], res["latency"]
    ledger0 = db.count("spend_ledger")

    print(f"[1/5] saturation: {args.conc} connections, {args.seconds}s each, upstream answers at once")
    up, up_port = start_upstream(0, 0)
    try:
        sat["direct-upstream"] = measured(f"http://127.0.0.1:{up_port}/v1/chat/completions", OPENAI_BODY,
                                          direct_key, args.conc, args.seconds, None)
        gw, port = start_gateway(db, up_port, log=logs / "gateway.log")
        try:
            base = f"http://127.0.0.1:{port}"
            sat["gateway /v1/chat/completions"] = measured(f"{base}/v1/chat/completions", OPENAI_BODY, key,
                                                           args.conc, args.seconds, gw, db)
            seeded = seed_history(port, db.client_key, conversation, 10)
            res["history_seeded_turns"] = seeded.get("conversation_turn")
            sat["gateway /api/v1/chat +history"] = measured(f"{base}/api/v1/chat", history_body(conversation), key,
                                                            args.conc, args.seconds, gw, db)
            # memory: RSS after all of the above (warm), then after a soak of N more requests
            print(f"[2/5] memory: RSS over {args.soak_requests} requests after warm-up")
            rss0, soaked, errors, t0 = tree_rss_mb(gw.pid), 0, 0, time.monotonic()
            while soaked < args.soak_requests and time.monotonic() - t0 < args.soak_max_seconds:
                left = args.soak_requests - soaked
                # chunks of at most 30 s, none past the time cap
                time_left = args.soak_max_seconds - (time.monotonic() - t0)
                secs = max(2.0, min(30.0, time_left, left / max(sat["gateway /v1/chat/completions"]["rps"], 1)))
                r = wrk(f"{base}/v1/chat/completions", OPENAI_BODY, key, args.conc, secs)
                soaked, errors = soaked + r["requests"], errors + r["errors"]
            rss1 = tree_rss_mb(gw.pid)
            res["memory"] = {"requests": soaked, "errors": errors, "seconds": round(time.monotonic() - t0, 1),
                             "rss_before_mb": round(rss0, 1), "rss_after_mb": round(rss1, 1),
                             "growth_pct": round(100 * (rss1 - rss0) / rss0, 1),
                             "asked": args.soak_requests, "cut_by_time": soaked < args.soak_requests}
            print(f"      {soaked} requests in {res['memory']['seconds']} s, {errors} errors, RSS {rss0:.1f} -> "
                  f"{rss1:.1f} MB" + (f" (stopped by --soak-max-seconds {args.soak_max_seconds:g} before "
                                      f"{args.soak_requests})" if soaked < args.soak_requests else ""))
        finally:
            stop(gw)
        if args.compare:
            lite, lport = start_litellm(up_port, logs / "litellm.log")
            try:
                sat["litellm-proxy 1.109.1"] = measured(f"http://127.0.0.1:{lport}/v1/chat/completions", OPENAI_BODY,
                                                        lite_key, args.conc, args.seconds, lite, warmup=4)
            finally:
                stop(lite)
    finally:
        stop(up)
    time.sleep(2)  # the ledger writer drains after SIGTERM
    res["ledger_rows_written"] = db.count("spend_ledger") - ledger0

    print(f"[3/5] latency at 1 connection, upstream {UPSTREAM_LATENCY_MS} ms; streaming every {CHUNK_MS} ms")
    up, up_port = start_upstream(UPSTREAM_LATENCY_MS, CHUNK_MS)
    try:
        direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        lat["direct-upstream"] = measured(direct_url, OPENAI_BODY, direct_key, 1, args.seconds, None, warmup=1)
        res["stream"]["direct-upstream"] = stream_probe(direct_url, direct_key, args.stream_requests)
        gw, port = start_gateway(db, up_port, log=logs / "gateway-latency.log")
        try:
            base = f"http://127.0.0.1:{port}"
            lat["gateway /v1/chat/completions"] = measured(f"{base}/v1/chat/completions", OPENAI_BODY, key, 1,
                                                           args.seconds, gw, db, warmup=1)
            lat["gateway /api/v1/chat +history"] = measured(f"{base}/api/v1/chat", history_body(conversation), key, 1,
                                                            args.seconds, gw, db, warmup=1)
            res["stream"]["gateway /v1/chat/completions"] = stream_probe(f"{base}/v1/chat/completions", key,
                                                                         args.stream_requests)
        finally:
            stop(gw)
        if args.compare:
            lite, lport = start_litellm(up_port, logs / "litellm-latency.log")
            try:
                lat["litellm-proxy 1.109.1"] = measured(f"http://127.0.0.1:{lport}/v1/chat/completions", OPENAI_BODY,
                                                        lite_key, 1, args.seconds, lite, warmup=2)
            finally:
                stop(lite)
    finally:
        stop(up)

    print("[4/5] scale: 1 vs 2 replicas behind nginx (nothing else pinned: wrk, nginx, upstream share both cores)")
    up, up_port = start_upstream(0, 0, cpu=None)
    try:
        for n in (1, 2):
            replicas = [start_gateway(db, up_port, cpu=str(i % NCPU), log=logs / f"replica{i}.log") for i in range(n)]
            nginx, nport = start_nginx([p for _, p in replicas], logs / f"nginx{n}")
            try:
                url = f"http://127.0.0.1:{nport}/v1/chat/completions"
                wrk(url, OPENAI_BODY, key, 64, 2, cpu=None)
                c0 = sum(tree_cpu(p.pid) for p, _ in replicas)
                r = wrk(url, OPENAI_BODY, key, 64, args.seconds, cpu=None, threads=2)
                c1 = sum(tree_cpu(p.pid) for p, _ in replicas)
                r["gateway_cpu_us_req"] = round((c1 - c0) / max(r["requests"], 1) * 1e6, 1)
                r["gateway_cpu_share"] = round((c1 - c0) / args.seconds / NCPU, 2)
                res["scale"][f"{n} replica(s)"] = {k: v for k, v in r.items() if k != "raw"}
            finally:
                stop(nginx)
                for p, _ in replicas:
                    stop(p)
    finally:
        stop(up)
    print("[5/5] monitor: GET /api/v1/system/status on one pinned core")
    mport = free_port()
    mon = spawn([str(BIN / "monitor")], env={**db.env, "MONITOR_PORT": str(mport), "MONITOR_HOST": "127.0.0.1",
                                             "LOG_LEVEL": "WARNING"}, cpu=GATEWAY_CPU, log=logs / "monitor.log")
    try:
        wait_ready(f"http://127.0.0.1:{mport}/healthz", timeout=60, proc=mon)
        res["monitor"] = measured(f"http://127.0.0.1:{mport}/api/v1/system/status", None, {}, args.conc,
                                  args.seconds, mon)
    finally:
        stop(mon)
    shutil.rmtree(logs, ignore_errors=True)
    return res


def report(res: dict[str, Any], m: dict[str, Any], args: argparse.Namespace) -> list[str]:
    sat, lat = res["saturate"], res["latency"]
    lite = sat.get("litellm-proxy 1.109.1")
    direct_lat = lat["direct-upstream"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, "
             f"Python {m['python']}, load average at start {m['loadavg_at_start']:.2f}",
             f"saturation: {args.conc} connections x {args.seconds}s, upstream at 0 ms; latency: 1 connection, "
             f"upstream at {UPSTREAM_LATENCY_MS} ms; target on CPU {GATEWAY_CPU}, wrk+upstream on CPU {LOAD_CPU}", ""]
    head = (f"{'target':<32}{'req/s':>8}{'x LiteLLM':>10}{'cpu us/req':>11}{'db us/req':>10}"
            f"{'p50 +ms':>9}{'p99 +ms':>9}{'errors':>8}")
    lines += [head, "-" * len(head)]
    for name, s in sat.items():
        lt = lat.get(name) or {}
        ratio = f"{s['rps'] / lite['rps']:.1f}x" if lite and lite["rps"] else "-"
        if name == "direct-upstream":
            p50 = f"{direct_lat['p50_ms']:.2f}*"
            p99 = f"{direct_lat['p99_ms']:.2f}*"
        elif lt:
            p50 = f"{lt['p50_ms'] - direct_lat['p50_ms']:+.2f}"
            p99 = f"{lt['p99_ms'] - direct_lat['p99_ms']:+.2f}"
        else:
            p50 = p99 = "-"
        cpu = f"{s['cpu_us_req']:.0f}" if s.get("cpu_us_req") is not None else "-"
        dbc = f"{s['db_cpu_us_req']:.0f}" if s.get("db_cpu_us_req") is not None else "-"
        errors = s["errors"] + (lt.get("errors") or 0)
        lines.append(f"{name:<32}{s['rps']:>8.0f}{ratio:>10}{cpu:>11}{dbc:>10}{p50:>9}{p99:>9}{errors:>8}")
    lines.append("* direct-upstream: its absolute p50/p99 (ms) at 1 connection; other rows are added over it.")
    st = res["stream"]
    if st:
        d, g = st["direct-upstream"], st["gateway /v1/chat/completions"]
        lines += ["", f"streaming (/v1/chat/completions, {args.stream_requests} streams, a chunk every {CHUNK_MS} ms): "
                      f"TTFB p50 {g['ttfb_p50_ms']:.2f} ms vs direct {d['ttfb_p50_ms']:.2f} ms "
                      f"({g['ttfb_p50_ms'] - d['ttfb_p50_ms']:+.2f}); inter-arrival p50 {g['gap_p50_ms']:.2f} vs "
                      f"{d['gap_p50_ms']:.2f} ms ({g['gap_p50_ms'] - d['gap_p50_ms']:+.2f}), p99 {g['gap_p99_ms']:.2f} "
                      f"vs {d['gap_p99_ms']:.2f} ms ({g['gap_p99_ms'] - d['gap_p99_ms']:+.2f})"]
    mem = res["memory"]
    lines.append(f"memory: gateway RSS {mem['rss_before_mb']} -> {mem['rss_after_mb']} MB over {mem['requests']} "
                 f"requests after warm-up ({mem['growth_pct']:+.1f}%), {mem.get('errors', 0)} errors")
    sc = res["scale"]
    one, two = sc["1 replica(s)"], sc["2 replica(s)"]
    lines.append(f"scale (nginx, 64 connections, all processes share {NCPU} cores): 1 replica {one['rps']:.0f} req/s, "
                 f"2 replicas {two['rps']:.0f} req/s = {two['rps'] / max(one['rps'], 1):.2f}x; replicas used "
                 f"{one['gateway_cpu_share']:.0%} / {two['gateway_cpu_share']:.0%} of the machine's CPU")
    lines.append(f"ledger rows written during the run: {res['ledger_rows_written']}; "
                 f"history conversation seeded to turn {res.get('history_seeded_turns')}")

    # targets
    gw_o, gw_h = sat["gateway /v1/chat/completions"], sat["gateway /api/v1/chat +history"]
    lo = lat["gateway /v1/chat/completions"]
    checks: list[tuple[str, bool | None, str]] = []
    if lite:
        checks.append(("/v1/chat/completions >= 15x LiteLLM req/s", gw_o["rps"] >= 15 * lite["rps"],
                       f"{gw_o['rps'] / lite['rps']:.1f}x"))
        checks.append(("/api/v1/chat +history >= 10x LiteLLM req/s", gw_h["rps"] >= 10 * lite["rps"],
                       f"{gw_h['rps'] / lite['rps']:.1f}x"))
    checks.append(("/v1/chat/completions <= 1.5 ms CPU/request", gw_o["cpu_us_req"] <= 1500,
                   f"{gw_o['cpu_us_req'] / 1000:.2f} ms (+{gw_o.get('db_cpu_us_req', 0) / 1000:.2f} ms PostgreSQL)"))
    checks.append(("/v1/chat/completions <= 0.5 ms PostgreSQL CPU/request", gw_o.get("db_cpu_us_req", 0) <= 500,
                   f"{gw_o.get('db_cpu_us_req', 0) / 1000:.2f} ms"))
    checks.append((f"/api/v1/chat +history ({res.get('history_seeded_turns')} turns) <= 3 ms CPU/request",
                   gw_h["cpu_us_req"] <= 3000,
                   f"{gw_h['cpu_us_req'] / 1000:.2f} ms (+{gw_h.get('db_cpu_us_req', 0) / 1000:.2f} ms PostgreSQL)"))
    checks.append(("added p50 <= 2 ms at 1 connection", lo["p50_ms"] - direct_lat["p50_ms"] <= 2,
                   f"{lo['p50_ms'] - direct_lat['p50_ms']:+.2f} ms"))
    checks.append(("added p99 <= 5 ms at 1 connection", lo["p99_ms"] - direct_lat["p99_ms"] <= 5,
                   f"{lo['p99_ms'] - direct_lat['p99_ms']:+.2f} ms"))
    if st:
        dt = st["gateway /v1/chat/completions"]["ttfb_p50_ms"] - st["direct-upstream"]["ttfb_p50_ms"]
        dg = abs(st["gateway /v1/chat/completions"]["gap_p50_ms"] - st["direct-upstream"]["gap_p50_ms"])
        checks.append(("streaming TTFB adds <= 2 ms p50", dt <= 2, f"{dt:+.2f} ms"))
        checks.append(("chunk inter-arrival within 1 ms (p50)", dg <= 1, f"{dg:.2f} ms"))
    over = (f"over {mem['requests']:,} requests" if mem["requests"] >= SOAK_TARGET
            else f"{mem['requests']:,} requests, short of {SOAK_TARGET:,}: make soak runs the full one")
    checks.append((f"RSS growth <= 10% ({over})", mem["growth_pct"] <= 10, f"{mem['growth_pct']:+.1f}%"))
    checks.append(("2 replicas >= 1.8x one (2 shared cores: see README)", two["rps"] >= 1.8 * one["rps"],
                   f"{two['rps'] / max(one['rps'], 1):.2f}x"))
    if "monitor" in res:
        checks.append(("monitor /api/v1/system/status >= 1000 req/s on one core", res["monitor"]["rps"] >= 1000,
                       f"{res['monitor']['rps']:.0f} req/s, {res['monitor']['cpu_us_req']:.0f} us CPU/request"))
    lines += ["", "targets:"]
    for label, ok, value in checks:
        lines.append(f"  [{'hold' if ok else 'MISS'}] {label}: {value}")
    res["targets"] = [{"target": label, "holds": ok, "value": value} for label, ok, value in checks]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", action="store_true", help="add LiteLLM Proxy (scripts/litellm-venv.sh) to the table")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--soak-requests", type=int, default=20000,
                    help=f"memory soak (the full target is {SOAK_TARGET}: make soak)")
    ap.add_argument("--soak-max-seconds", type=float, default=45,
                    help="stop the soak after this long even if short of --soak-requests (keeps make bench short)")
    ap.add_argument("--stream-requests", type=int, default=40)
    ap.add_argument("--profile", action="store_true", help="py-spy the /v1/chat/completions path, then stop")
    ap.add_argument("--profile-route", choices=("openai", "original"), default="openai",
                    help="--profile: /v1/chat/completions (openai) or /api/v1/chat with 10 stored turns (original)")
    ap.add_argument("--quick", action="store_true", help="saturation rows of the gateway only, nothing written")
    ap.add_argument("--repeat", type=int, default=2, help="--quick: how many times to measure each row")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench needs wrk and taskset (make system-packages)")
    if args.compare and not (LITELLM_VENV / "bin" / "litellm").exists():
        sys.exit("LiteLLM is not installed: bash scripts/litellm-venv.sh")
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # this script's own work (stream probe) stays off the target's core
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d")
    m = machine()
    db = Database()
    started = time.monotonic()
    try:
        if args.profile:
            profile(args, db, stamp)
            return
        if args.quick:
            quick(args, db)
            return
        res = run(args, db)
    finally:
        for p in list(_started):
            stop(p)
        if not args.keep_db:
            db.drop()
    lines = report(res, m, args)
    print("\n" + "\n".join(lines))
    out = RESULTS / (f"{stamp}-compare.json" if args.compare else f"{stamp}.json")
    out.write_text(json.dumps({"date": now.isoformat(timespec="seconds"), "machine": m, "args": vars(args),
                               "seconds_total": round(time.monotonic() - started, 1), "results": res,
                               "table": lines}, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)} ({time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
