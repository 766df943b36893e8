"""Times the console's queries on a large database.

Creates a fresh PostgreSQL database, migrates it, seeds 100,000 turns (in 30,000
conversations) and 1,000,000 spend-ledger rows spread over a year with INSERT ... SELECT
generate_series, then runs each admin page's read-model queries several times and prints the
median. Target: under 300 ms each. The database is dropped afterwards (--keep keeps it).

    .venv/bin/python bench/admin_queries.py [--runs 5] [--keep]

TEST_POSTGRES_ADMIN_URL (default: postgres on 127.0.0.1:5432) names the server.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config

from chat_api.admin.csv_export import ledger_csv
from domain.adapters.sql.database import make_engine, normalize_url
from domain.adapters.sql.read_models import conversations, keys, overview, request_log, spend
from domain.adapters.sql.read_models.shared import LedgerFilter
from domain.client_keys import KEY_SCOPE_PREFIX
from domain.periods import day_key, month_key

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 300.0
TURNS, CONVERSATIONS, LEDGER, KEYS = 100_000, 30_000, 1_000_000, 1_000
SEEDED_AT = datetime.now(UTC)  # the budget counters are today's and this month's (budget time zone)

SEED = [
    f"""INSERT INTO client_keys (id, short_id, name, key_hash, daily_limit_nanos, monthly_limit_nanos,
                                 may_use_server_key, created_at)
        SELECT md5('k' || g), substr(md5('s' || g), 1, 8), 'client ' || g, md5('h' || g) || md5('H' || g),
               5000000000, 100000000000, true, now() - interval '400 days'
        FROM generate_series(1, {KEYS}) g""",
    f"""INSERT INTO conversations (id, owner, external_id, turn_count, created_at, updated_at)
        SELECT g, md5('k' || (g % {KEYS} + 1)), 'conv-' || g, 0,
               now() - make_interval(secs => ({CONVERSATIONS} - g) * 31536000.0 / {CONVERSATIONS} + 3600),
               now() - make_interval(secs => ({CONVERSATIONS} - g) * 31536000.0 / {CONVERSATIONS} + 3600)
        FROM generate_series(1, {CONVERSATIONS}) g""",
    f"""INSERT INTO turns (id, conversation_id, turn_index, request_id, created_at, system_prompt, prompt, reply, model)
        SELECT t, (t - 1) % {CONVERSATIONS} + 1, (t - 1) / {CONVERSATIONS} + 1, 'req-' || t,
               c.created_at + make_interval(mins => (t - 1) / {CONVERSATIONS} + 1), 'You are helpful.',
               '질문 ' || t || ' about ' || md5(t::text) || ' 서울 날씨와 일정',
               repeat('답변 ' || md5((t * 7)::text) || ' ', 6),
               (ARRAY['gpt-4o-mini','gpt-4.1','gpt-4o','o3','gpt-5-mini'])[t % 5 + 1]
        FROM generate_series(1, {TURNS}) t JOIN conversations c ON c.id = (t - 1) % {CONVERSATIONS} + 1""",
    """UPDATE conversations c SET turn_count = x.n, updated_at = x.last
       FROM (SELECT conversation_id, count(*) n, max(created_at) last FROM turns GROUP BY conversation_id) x
       WHERE x.conversation_id = c.id""",
    # Ledger rows for the turns (same request ids) and the rest spread over a year, written in
    # time order as the append-only ledger is in production (so the heap follows created_at).
    f"""INSERT INTO spend_ledger (request_id, created_at, client_key_id, conversation_id, route, model, key_source,
                                  outcome, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
                                  cost_nanos, charged_nanos, priced, estimated, catalog_version, latency_ms)
        SELECT request_id, created_at, client_key_id, conversation_id, route, model,
               CASE WHEN n % 10 = 0 THEN 'user' ELSE 'server' END,
               CASE WHEN n % 50 = 0 AND conversation_id IS NULL THEN 'error' ELSE 'ok' END,
               n % 2000 + 100, n % 100, n % 500 + 10, 0,
               (n % 2000 + 100) * 150 + (n % 500 + 10) * 600,
               CASE WHEN n % 10 = 0 THEN 0 ELSE (n % 2000 + 100) * 150 + (n % 500 + 10) * 600 END,
               true, false, 'bench', n % 3000
        FROM (
            SELECT t.id AS n, t.request_id, t.created_at, c.owner AS client_key_id, c.id AS conversation_id,
                   '/api/v1/chat' AS route, t.model
            FROM turns t JOIN conversations c ON c.id = t.conversation_id
            UNION ALL
            SELECT s, 'bulk-' || s, now() - make_interval(secs => (s::bigint * 7919 % {LEDGER}) * 31536000.0 / {LEDGER}),
                   CASE WHEN s % 20 = 0 THEN NULL ELSE md5('k' || (s % {KEYS} + 1)) END, NULL,
                   '/v1/chat/completions', (ARRAY['gpt-4o-mini','gpt-4.1','gpt-4o','o3','gpt-5-mini'])[s % 5 + 1]
            FROM generate_series(1, {LEDGER - TURNS}) s
        ) rows ORDER BY created_at""",
    f"""INSERT INTO budget_counters (scope, period, spent_nanos, reserved_nanos)
        SELECT '{KEY_SCOPE_PREFIX}' || md5('k' || g), p, 1000000 * g, 0
        FROM generate_series(1, {KEYS}) g,
             unnest(ARRAY['{day_key(SEEDED_AT)}', '{month_key(SEEDED_AT)}']) p""",
    # the request log: one entry per ledger row, one in ten a refusal (402/429/400), one in
    # five a stream (with its time to first token)
    """INSERT INTO request_log (request_id, created_at, route, status, error_code, client_key_id, model, key_source,
                               upstream, latency_ms, cost_nanos, ttft_ms)
        SELECT request_id, created_at, route,
               CASE WHEN id % 10 = 1 THEN 402 WHEN id % 10 = 2 THEN 429 WHEN id % 50 = 3 THEN 400 ELSE 200 END,
               CASE WHEN id % 10 = 1 THEN 'budget_exceeded' WHEN id % 10 = 2 THEN 'rate_limited' END,
               client_key_id, model, key_source, 'default', latency_ms, cost_nanos,
               CASE WHEN id % 5 = 0 THEN latency_ms / 4 END
        FROM spend_ledger""",
    "SELECT setval('conversations_id_seq', (SELECT max(id) FROM conversations))",
    "SELECT setval('turns_id_seq', (SELECT max(id) FROM turns))",
]


def create_database() -> str:
    name = f"llm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def migrate(url: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = normalize_url(url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


def seed(url: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for sql in SEED:
            conn.execute(sql)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()  # warm the cache and the connection pool
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def cases(engine: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    now = datetime.now(UTC)
    d7, d30 = now - timedelta(days=7), now - timedelta(days=30)
    busy_key = keys.keys(engine, now)[0].id
    conv = conversations.conversations(engine, conversations.ConversationFilter(), page_size=1).items[0].id

    def csv_rows(flt: LedgerFilter, limit: int) -> int:
        return sum(chunk.count("\n") for chunk in ledger_csv(engine, flt, limit=limit)) - 1

    return [
        ("overview", "today, month, top models/clients, 30 days by day", lambda: overview.overview(engine, now)),
        ("conversations", "page 1, last 7 days", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(since=d7))),
        ("conversations", "page 1, all time", lambda: conversations.conversations(engine, conversations.ConversationFilter())),
        ("conversations", "page 500, all time", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(), page=500)),
        ("conversations", "one client key, all time", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(client_key_id=busy_key))),
        ("conversations", "key_source=user + model, 30 days", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(since=d30, key_source="user", model="gpt-4.1"))),
        ("conversations", "text search, 30 days", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(since=d30, q="날씨"))),
        ("conversations", "text search (rare), all time", lambda: conversations.conversations(
            engine, conversations.ConversationFilter(q="질문 77777 "))),
        ("conversation", "one conversation's turns", lambda: conversations.conversation_turns(engine, conv)),
        *[("spend", f"group_by={g}, 30 days", (lambda g=g: spend.spend(engine, g, LedgerFilter(since=d30))))
          for g in ("day", "model", "key_source", "client_key")],
        ("spend", "group_by=model, 30 days, one key", lambda: spend.spend(
            engine, "model", LedgerFilter(since=d30, client_key_id=busy_key))),
        ("spend", "group_by=day, 30 days, key_source=user", lambda: spend.spend(
            engine, "day", LedgerFilter(since=d30, key_source="user"))),
        ("spend (info)", "group_by=model, all time (1M rows)", lambda: spend.spend(
            engine, "model", LedgerFilter())),
        ("ledger.csv", "first 5,000 rows, 30 days", lambda: csv_rows(LedgerFilter(since=d30), 5_000)),
        ("ledger.csv (info)", "100,000 rows (the default cap)", lambda: csv_rows(LedgerFilter(), 100_000)),
        ("keys", f"{KEYS:,} keys: spent, held, 402s today, last used", lambda: keys.keys(engine, now)),
        ("requests", "page 1, last 24 hours", lambda: request_log.requests(
            engine, request_log.RequestFilter(since=now - timedelta(hours=24)))),
        ("requests", "errors, last 7 days, page 1", lambda: request_log.requests(
            engine, request_log.RequestFilter(status="error", since=d7))),
        ("requests", "status=402, one key, 30 days", lambda: request_log.requests(
            engine, request_log.RequestFilter(status="402", client_key_id=busy_key, since=d30))),
        ("requests", "page 1, all time", lambda: request_log.requests(engine, request_log.RequestFilter())),
        ("overview (now)", "last 15 minutes by status, p50/p95, TTFT", lambda: request_log.now_window(
            engine, now - timedelta(minutes=15))),
        ("overview (charts)", "last 24 hours by hour: status, p50/p95, TTFT, cost", lambda: request_log.timeseries(
            engine, now)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    url = create_database()
    engine = None
    try:
        migrate(url)
        print(f"seeding {TURNS:,} turns, {CONVERSATIONS:,} conversations, {LEDGER:,} ledger rows ...", flush=True)
        print(f"seeded in {seed(url):.1f} s", flush=True)
        engine = make_engine(url, pool_size=2)
        slow = 0
        print(f"\n{'page':<20}{'query':<52}{'median ms':>10}{'max ms':>10}")
        for page, label, fn in cases(engine):
            median, worst = timed(fn, args.runs)
            info = "(info)" in page
            flag = "" if info or median < TARGET_MS else "  SLOW"
            slow += bool(flag)
            print(f"{page:<20}{label:<52}{median:>10.1f}{worst:>10.1f}{flag}", flush=True)
        print(f"\ntarget < {TARGET_MS:.0f} ms per page query; rows marked (info) are bulk operations, not pages")
        return 1 if slow else 0
    finally:
        if engine is not None:
            engine.dispose()
        if args.keep:
            print(f"kept database {url.rsplit('/', 1)[1]}")
        else:
            drop_database(url)


if __name__ == "__main__":
    sys.exit(main())
