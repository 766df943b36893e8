"""Two builds of the gateway side by side: CPU per request, alternating runs, medians.

    .venv/bin/python bench/ab.py A_TREE B_TREE [--rounds 4] [--seconds 4] [--route openai|original|both]
    .venv/bin/python bench/ab.py A_TREE B_TREE --conc 1 --upstream-ms 50   # added latency, with a direct row

A_TREE and B_TREE are source trees of this repository (e.g. ``git archive main`` unpacked
somewhere, and this checkout); both run with this venv, ``PYTHONPATH`` naming the tree's
``services/chat_api/src`` and ``libs/domain/src``. Both gateways are pinned to CPU 0 and
share the fake upstream (answering at once), one fresh database and one capped client key;
wrk (32 connections) runs against A, then B, then A... so the machine's load moves both
columns alike. Prints each run and the medians of CPU per request (the gateway's process
tree) and PostgreSQL backend CPU per request. On a shared machine, these medians, not req/s,
are the figure to compare. Take the bench lock around it when others measure too.

    .venv/bin/python bench/ab.py . . --server uvicorn granian:uvloop --extra-path DIR [--stream-requests 40]

compares the servers instead: one tree served by uvicorn (``chat-api``) and by granian's ASGI
interface (one worker), granian installed with ``pip install --target DIR granian`` outside the
project's venv (it is not a dependency). ``GRANIAN_*`` variables in the environment reach
granian (e.g. ``GRANIAN_RUNTIME_MODE=st``). The CPU is the whole process tree's, so granian's
worker process and its Rust threads are counted. ``--stream-requests`` adds TTFB and chunk gaps
(A, B and direct, in both orders).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench


def server_cmd(server: str, host: str, port: int) -> list[str]:
    """The command serving the app: the project's ``chat-api`` (uvicorn, httptools, uvloop), or
    granian's ASGI interface with one worker on the loop named after the colon
    (``granian:uvloop``, ``granian:rloop``, ``granian:asyncio``). granian is not a dependency of
    the project: it must be importable from the ``--extra-path`` directory."""
    if server == "uvicorn":
        return [str(bench.BIN / "chat-api")]
    loop = server.partition(":")[2] or "uvloop"
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", host, "--port", str(port),
            "--workers", "1", "--loop", loop, "--http", "1", "--no-ws", "--log-level", "warning",
            "chat_api.app:make_app"]


def start(db: bench.Database, tree: Path, upstream_port: int, server: str = "uvicorn",
          extra_path: str = "") -> tuple[object, int]:
    port = bench.free_port()
    env = {**db.env, "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1", "CHAT_API_PORT": str(port),
           "CHAT_API_HOST": "127.0.0.1", "LEDGER_SPOOL_PATH": str(db.data_dir / f"spool-{port}.sqlite3"),
           "HISTORY_MAX_TURNS": "10",
           "PYTHONPATH": ":".join(filter(None, (str(tree / "services/chat_api/src"), str(tree / "libs/domain/src"),
                                                 extra_path)))}
    p = bench.spawn(server_cmd(server, "127.0.0.1", port), env=env, cpu=bench.GATEWAY_CPU)
    bench.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=p)
    return p, port


def streams(args: argparse.Namespace, targets: dict[str, tuple[object, int, str]], key: dict[str, str],
            up_port: int) -> None:
    """Streaming through each target and direct, in both orders: TTFB and content-chunk gaps."""
    direct = (f"http://127.0.0.1:{up_port}/v1/chat/completions", {"Authorization": f"Bearer {bench.SERVER_KEY}"})
    urls = {name: (f"http://127.0.0.1:{port}/v1/chat/completions", key) for name, (_p, port, _c) in targets.items()}
    urls["direct"] = direct
    print(f"\nstreaming ({args.stream_requests} streams per pass, upstream {args.upstream_ms} ms to first byte, "
          f"a chunk every {bench.CHUNK_MS} ms):")
    for i, order in enumerate((("A", "B", "direct"), ("direct", "B", "A"))):
        for name in order:
            r = bench.stream_probe(*urls[name], args.stream_requests)
            print(f"  pass {i + 1} {name:<6} TTFB p50 {r['ttfb_p50_ms']:.2f} ms, gap p50 {r['gap_p50_ms']:.2f} ms, "
                  f"p99 {r['gap_p99_ms']:.2f} ms ({r['gaps']} gaps)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--route", choices=("openai", "original", "both"), default="openai")
    ap.add_argument("--upstream-ms", type=float, default=0,
                    help="the fake upstream's latency: with --conc 1, compare added latency (p50/p99 over direct)")
    ap.add_argument("--server", nargs=2, metavar=("A_SERVER", "B_SERVER"), default=("uvicorn", "uvicorn"),
                    help="what serves A and B: uvicorn, or granian[:uvloop|rloop|asyncio] (the same tree twice "
                         "compares the servers)")
    ap.add_argument("--extra-path", default="", help="a directory added to PYTHONPATH (where granian is installed)")
    ap.add_argument("--stream-requests", type=int, default=0,
                    help="after the rounds: this many sequential streams per target, TTFB and chunk gaps")
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(bench.LOAD_CPU)})
    db = bench.Database()
    key = {"Authorization": f"Bearer {db.client_key}"}
    try:
        _up, up_port = bench.start_upstream(args.upstream_ms, bench.CHUNK_MS if args.stream_requests else 0)
        targets = {}
        for name, tree, server in (("A", args.a.resolve(), args.server[0]), ("B", args.b.resolve(), args.server[1])):
            proc, port = start(db, tree, up_port, server, args.extra_path)
            conversation = f"bench-conv-{uuid.uuid4().hex[:8]}"
            bench.seed_history(port, db.client_key, conversation, 10)
            targets[name] = (proc, port, conversation)
        routes = ["openai", "original"] if args.route == "both" else [args.route]
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        latency: dict[tuple[str, str], list[tuple[float, float]]] = {}
        names = ("A", "B", "direct") if args.upstream_ms else ("A", "B")
        for i in range(args.rounds):
            for route in routes:
                for name in (names if i % 2 == 0 else names[::-1]):
                    if name == "direct":
                        r = bench.measured(f"http://127.0.0.1:{up_port}/v1/chat/completions", bench.OPENAI_BODY,
                                           {"Authorization": f"Bearer {bench.SERVER_KEY}"}, args.conc, args.seconds,
                                           None, None, warmup=1)
                        latency.setdefault((route, name), []).append((r["p50_ms"], r["p99_ms"]))
                        print(f"round {i + 1} {route:<9}direct {r['rps']:>7.0f} req/s p50 {r['p50_ms']:.2f} ms "
                              f"p99 {r['p99_ms']:.2f} ms", flush=True)
                        continue
                    proc, port, conversation = targets[name]
                    if route == "openai":
                        url, body = f"http://127.0.0.1:{port}/v1/chat/completions", bench.OPENAI_BODY
                    else:
                        url, body = f"http://127.0.0.1:{port}/api/v1/chat", bench.history_body(conversation)
                    r = bench.measured(url, body, key, args.conc, args.seconds, proc, db, warmup=1)  # type: ignore[arg-type]
                    figures.setdefault((route, name), []).append((r["cpu_us_req"], r["db_cpu_us_req"]))
                    latency.setdefault((route, name), []).append((r["p50_ms"], r["p99_ms"]))
                    print(f"round {i + 1} {route:<9}{name} {r['rps']:>7.0f} req/s {r['cpu_us_req']:>7.0f} us CPU/req "
                          f"{r['db_cpu_us_req']:>6.0f} us PostgreSQL/req p50 {r['p50_ms']:.2f} ms "
                          f"p99 {r['p99_ms']:.2f} ms {r['errors']} errors", flush=True)
        print(f"\nmedians of {args.rounds} rounds (load average now {os.getloadavg()[0]:.1f}):")
        for (route, name), runs in sorted(figures.items()):
            print(f"  {route:<9}{name} ({[args.a, args.b][name == 'B']}, {args.server[name == 'B']}): "
                  f"{statistics.median(c for c, _ in runs):>7.0f} us CPU/req, "
                  f"{statistics.median(d for _, d in runs):>6.0f} us PostgreSQL/req, "
                  f"p50 {statistics.median(p for p, _ in latency[(route, name)]):.2f} ms, "
                  f"p99 {statistics.median(q for _, q in latency[(route, name)]):.2f} ms")
        for (route, name), runs in sorted(latency.items()):
            if name == "direct":
                print(f"  {route:<9}direct upstream: p50 {statistics.median(p for p, _ in runs):.2f} ms, "
                      f"p99 {statistics.median(q for _, q in runs):.2f} ms")
        if args.stream_requests:
            streams(args, targets, key, up_port)
    finally:
        for p in list(bench._started):
            bench.stop(p)
        db.drop()


if __name__ == "__main__":
    main()
