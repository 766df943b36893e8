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


def start(db: bench.Database, tree: Path, upstream_port: int) -> tuple[object, int]:
    port = bench.free_port()
    env = {**db.env, "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1", "CHAT_API_PORT": str(port),
           "CHAT_API_HOST": "127.0.0.1", "LEDGER_SPOOL_PATH": str(db.data_dir / f"spool-{port}.sqlite3"),
           "HISTORY_MAX_TURNS": "10",
           "PYTHONPATH": f"{tree / 'services/chat_api/src'}:{tree / 'libs/domain/src'}"}
    p = bench.spawn([str(bench.BIN / "chat-api")], env=env, cpu=bench.GATEWAY_CPU)
    bench.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=p)
    return p, port


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
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(bench.LOAD_CPU)})
    db = bench.Database()
    key = {"Authorization": f"Bearer {db.client_key}"}
    try:
        _up, up_port = bench.start_upstream(args.upstream_ms, 0)
        targets = {}
        for name, tree in (("A", args.a.resolve()), ("B", args.b.resolve())):
            proc, port = start(db, tree, up_port)
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
            print(f"  {route:<9}{name} ({[args.a, args.b][name == 'B']}): "
                  f"{statistics.median(c for c, _ in runs):>7.0f} us CPU/req, "
                  f"{statistics.median(d for _, d in runs):>6.0f} us PostgreSQL/req, "
                  f"p50 {statistics.median(p for p, _ in latency[(route, name)]):.2f} ms, "
                  f"p99 {statistics.median(q for _, q in latency[(route, name)]):.2f} ms")
        for (route, name), runs in sorted(latency.items()):
            if name == "direct":
                print(f"  {route:<9}direct upstream: p50 {statistics.median(p for p, _ in runs):.2f} ms, "
                      f"p99 {statistics.median(q for _, q in runs):.2f} ms")
    finally:
        for p in list(bench._started):
            bench.stop(p)
        db.drop()


if __name__ == "__main__":
    main()
