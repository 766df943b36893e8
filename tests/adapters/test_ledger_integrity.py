"""Money integrity in the ledger adapters, on PostgreSQL and SQLite: the spool round-trips
any text and cannot be poisoned, a row is never refused, stale holds become orphaned rows
exactly once, a dead writer is restarted, and stuck idempotency claims expire.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sqlite3
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from domain.adapters.openai_provider import usage_from
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.idempotency import SqlIdempotencyStore
from domain.adapters.sql.ledger import (
    SqlSpendLedger,
    record_from_json,
    record_to_json,
    sweep_stale_holds,
    write_records,
)
from domain.adapters.sql.reconcile import reconcile
from domain.adapters.sql.repositories import SqlBudgetStore, SqlConversationRepository
from domain.budgets import HoldTag, budget_lines
from domain.client_keys import BudgetLimits
from domain.errors import Conflict
from domain.money import Money
from domain.ports import UpstreamApi
from domain.usage import TokenUsage
from tests.adapters.test_repositories import T0, a_record, ledger_rows, uid

POISON = "줄\u2028바꿈\u2029문단\u0085다음\x00널\ud800외톨이\udfff끝"
DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def assert_reconciled(engine, scope: str) -> None:
    drifts = [d for d in reconcile(engine) if d.scope == scope]
    assert drifts and all(d.spent_drift == 0 and d.held_drift == 0 for d in drifts), drifts


async def a_hold(engine, owner: str, amount: int, *, request_id: str | None = None, at: datetime = T0):
    store = SqlBudgetStore(engine)
    lines = budget_lines(f"key:{owner}", BudgetLimits(daily=Money.from_usd("1")), BudgetLimits(), at)
    tag = HoldTag(request_id or "req_" + uid(), owner, "/v1/chat/completions", "gpt-4o-mini", "2026-11-01")
    return await store.reserve(lines, Money(amount), tag), tag


def counters(engine, scope: str) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT period, spent_nanos, reserved_nanos FROM budget_counters WHERE scope = :s"),
                            {"s": scope}).all()
    return {p: (s, r) for p, s, r in rows}


# -- the spool --------------------------------------------------------------------------------
async def test_any_text_round_trips_through_the_spool_and_reaches_the_database(engine, tmp_path):
    """The issue's poisoning: U+2028 (and its friends, NUL, lone surrogates) in a prompt
    spooled while the database is away. The record reads back exactly; once the database is
    back it is stored (NUL removed, surrogates replaced, flagged) and later records too."""
    owner, conv = uid(), "conv-" + uid()
    poisoned = a_record(owner=owner, conversation_id=conv, prompt=POISON, reply=POISON)
    poisoned = replace(poisoned, model="gpt-4o-mini" + POISON)
    down = make_engine(DOWN_URL, pool_timeout=1)
    spool = tmp_path / "spool.sqlite3"
    try:
        away = SqlSpendLedger(down, spool_path=spool)
        away.submit(poisoned)
        [(_, payload)] = away.spool.take(10)
        assert payload.isascii()
        assert record_from_json(json.loads(payload)) == poisoned  # exact, surrogates included
        away.spool.close()
    finally:
        down.dispose()
    back = SqlSpendLedger(engine, spool_path=spool, retry_seconds=0.05)
    back.start()
    later = a_record(owner=owner)
    await back.record(later)
    back.flush()  # the writer replays the spool before it is done
    assert back.spool_size() == 0
    back.close()
    [row] = ledger_rows(engine, poisoned.request_id)
    assert "\x00" not in row["model"] and "\u2028" in row["model"]
    assert set(row["anomalies"].split(",")) == {"nul_removed", "text_replaced"}
    assert len(ledger_rows(engine, later.request_id)) == 1
    [turn] = await SqlConversationRepository(engine).recent_turns(owner, conv, 5)
    assert turn.prompt.startswith("줄\u2028바꿈\u2029문단\u0085다음널") and turn.prompt.endswith("끝")


async def test_an_unreadable_spool_record_is_set_aside_and_never_stops_the_replay(engine, tmp_path):
    spool = tmp_path / "spool.sqlite3"
    ledger = SqlSpendLedger(engine, spool_path=spool)
    first, last = a_record(), a_record()
    ledger.spool.append([])  # creates the file
    ledger.spool.close()
    good = json.dumps(record_to_json(first))
    with sqlite3.connect(spool) as conn:  # what a torn write or a bad disk could leave behind
        conn.executemany("INSERT INTO spool (payload) VALUES (?)",
                         [(good,), ('{"request_id": "half',), ("[1, 2]",), ('{"request_id": "x"}',),
                          (json.dumps(record_to_json(last)),)])
    ledger = SqlSpendLedger(engine, spool_path=spool)
    ledger._replay_spool()
    assert ledger.spool_size() == 0
    assert len(ledger_rows(engine, first.request_id, last.request_id)) == 2
    aside = ledger.spool.set_aside_entries()
    assert [payload for _, payload in aside] == ['{"request_id": "half', "[1, 2]", '{"request_id": "x"}']
    assert all(reason.startswith("unreadable spool record") for reason, _ in aside)


def test_spool_files_are_private(tmp_path):
    spool = tmp_path / "fresh-dir" / "spool.sqlite3"
    ledger = SqlSpendLedger(make_engine(DOWN_URL, pool_timeout=1), spool_path=spool)
    ledger.submit(a_record(prompt=POISON))
    assert stat.S_IMODE(os.stat(spool.parent).st_mode) == 0o700
    for path in spool.parent.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    ledger.engine.dispose()


def test_a_damaged_spool_file_is_moved_aside_and_an_old_jsonl_spool_is_imported(tmp_path):
    """The old text spool, with a U+2028 inside a record (what ``splitlines`` broke on), is
    imported line by line; a file that is not a database is kept aside, not fatal."""
    old, poisoned = a_record(), a_record(prompt="a\u2028b")
    path = tmp_path / "spool.jsonl"
    path.write_text(json.dumps(record_to_json(old), ensure_ascii=False) + "\n"
                    + json.dumps(record_to_json(poisoned), ensure_ascii=False) + "\n" + "{torn\n", encoding="utf-8")
    ledger = SqlSpendLedger(make_engine(DOWN_URL, pool_timeout=1), spool_path=path)
    assert ledger.spool_size() == 2
    assert [record_from_json(json.loads(p)) for _, p in ledger.spool.take(5)] == [old, poisoned]
    assert [json.loads(p) for _, p in ledger.spool.set_aside_entries()] == [{"raw": "{torn"}]
    ledger.spool.close()
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    other = SqlSpendLedger(ledger.engine, spool_path=damaged)
    other.submit(a_record())
    assert other.spool_size() == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("damaged.sqlite3.damaged-")]
    ledger.engine.dispose()


# -- a row is never refused -------------------------------------------------------------------
async def test_ids_names_and_codes_of_any_length_are_stored(engine, tmp_path):
    long_id = "resp_" + "L" * 445  # a LiteLLM-style response id
    twin = "resp_" + "L" * 700 + "a"  # two long ids sharing a long prefix stay distinct
    twin2 = "resp_" + "L" * 700 + "b"
    rows = [replace(a_record(request_id="req_" + "r" * 900), response_id=long_id, model="m" * 150,
                    error_code="e" * 300, catalog_version="v" * 100),
            replace(a_record(), response_id=twin), replace(a_record(), response_id=twin2)]
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "s.sqlite3")
    for r in rows:
        await ledger.record(r)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT request_id, response_id, model, error_code, anomalies FROM spend_ledger "
                                   "WHERE response_id LIKE 'resp_LLL%' ORDER BY id")).all()
    mine = [s for s in stored if s[1] in (long_id,) or s[0].startswith("req_rrr")]
    assert mine and mine[0][1] == long_id and mine[0][2] == "m" * 150 and len(mine[0][0]) <= 512
    assert "id_shortened" in mine[0][4]
    found = await ledger.response_reference(long_id)
    assert found is not None and found.owner is None
    assert await ledger.response_reference(twin) is not None and await ledger.response_reference(twin2) is not None
    assert await ledger.response_reference(twin + "c") is None
    assert write_records(engine, rows) == [None, None, None]  # the shortened id still dedups


@pytest.mark.parametrize("usage, anomaly", [
    ({"prompt_tokens": -5, "completion_tokens": 7}, "usage_negative"),
    ({"prompt_tokens": "lots", "completion_tokens": 7}, "usage_invalid"),
    ({"prompt_tokens": 3, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 99},
      "completion_tokens_details": {"reasoning_tokens": 50}}, None),
    (["not", "a", "dict"], "usage_invalid"),
    ({"prompt_tokens": 10**15, "completion_tokens": 7}, "usage_invalid"),  # beyond an INTEGER column
])
async def test_negative_or_odd_usage_is_normalised_and_flagged(engine, tmp_path, usage, anomaly):
    tokens = usage_from(UpstreamApi.CHAT_COMPLETIONS, usage)
    assert tokens is not None and tokens.anomaly == anomaly
    assert min(tokens.input_tokens, tokens.output_tokens) >= 0
    assert tokens.cached_input_tokens <= tokens.input_tokens and tokens.reasoning_tokens <= tokens.output_tokens
    record = replace(a_record(), usage=tokens)
    await SqlSpendLedger(engine, spool_path=tmp_path / "s.sqlite3").record(record)
    [row] = ledger_rows(engine, record.request_id)
    assert bool(row["estimated"]) is (anomaly is not None)
    assert row["anomalies"] == anomaly


# -- stale holds become orphaned rows ---------------------------------------------------------
async def test_a_stale_hold_becomes_an_orphaned_row_charged_at_the_held_amount(engine):
    owner = uid()
    hold, tag = await a_hold(engine, owner, 250_000)
    fresh, _ = await a_hold(engine, owner, 1_000)
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    # the second hold is younger than the cut-off only if taken after it: take one more later
    assert sweep_stale_holds(engine, datetime.now(UTC) - timedelta(hours=1)) == 0
    charged = sweep_stale_holds(engine, cutoff)
    assert charged >= 2  # both of ours (other tests' holds on the shared database may be swept too)
    [row] = ledger_rows(engine, tag.request_id)
    assert (row["outcome"], bool(row["estimated"]), row["charged_nanos"], row["cost_nanos"]) == (
        "orphaned", True, 250_000, 250_000)
    assert (row["client_key_id"], row["model"], row["route"], row["key_source"]) == (
        owner, "gpt-4o-mini", "/v1/chat/completions", "server")
    scope = f"key:{owner}"
    day = counters(engine, scope)
    assert all(reserved == 0 for _, reserved in day.values())
    assert sum(spent for p, (spent, _) in day.items() if p.startswith("d:")) == 251_000
    assert sweep_stale_holds(engine, cutoff) == 0  # once only
    # the replica was only slow: its real row arrives after the sweep and changes nothing
    late = replace(a_record(request_id=tag.request_id, owner=owner, cost=Money(9)), reservation=hold)
    assert write_records(engine, [late]) == [None]
    assert len(ledger_rows(engine, tag.request_id)) == 1 and fresh.id
    assert_reconciled(engine, scope)


async def test_a_hold_whose_row_was_stored_is_released_not_charged_twice(engine):
    owner = uid()
    hold, tag = await a_hold(engine, owner, 400_000)
    # The row exists (say, written by a replay) but its hold stayed open.
    write_records(engine, [a_record(request_id=tag.request_id, owner=owner)])
    sweep_stale_holds(engine, datetime.now(UTC) + timedelta(seconds=1))
    [row] = ledger_rows(engine, tag.request_id)
    assert row["outcome"] == "ok"
    assert all(reserved == 0 for _, reserved in counters(engine, f"key:{owner}").values())
    assert_reconciled(engine, f"key:{owner}")


@pytest.mark.parametrize("sweepers", [4])
async def test_concurrent_sweepers_and_writers_leave_exactly_one_row_per_hold(db_url, sweepers):
    """Replicas sweep at once while the slow replica's own rows arrive: one row per hold,
    counters equal to the ledger."""
    engine = make_engine(db_url, pool_size=sweepers + 2)
    owner = uid()
    try:
        holds = [await a_hold(engine, owner, 10_000 + 10 * i) for i in range(60)]  # whole 1e-8 USD: the console rounds there
        cutoff = datetime.now(UTC) + timedelta(seconds=1)
        barrier = threading.Barrier(sweepers + 1)

        def sweep() -> int:
            barrier.wait()
            total = 0
            for _ in range(5):
                total += sweep_stale_holds(engine, cutoff, limit=7)
            return total

        def write() -> None:
            barrier.wait()
            for hold, tag in holds[::3]:  # a third of the requests finish late, during the sweep
                try:
                    write_records(engine, [replace(a_record(request_id=tag.request_id, owner=owner), reservation=hold)])
                except Exception as exc:  # a deadlock victim retries, as the writer's spool would
                    assert "deadlock" in str(exc).lower(), exc
                    write_records(engine, [replace(a_record(request_id=tag.request_id, owner=owner),
                                                   reservation=hold)])

        with ThreadPoolExecutor(sweepers + 1) as pool:
            futures = [pool.submit(sweep) for _ in range(sweepers)] + [pool.submit(write)]
            [f.result() for f in futures]
        while sweep_stale_holds(engine, cutoff):
            pass
        rows = ledger_rows(engine, *(tag.request_id for _, tag in holds))
        assert len(rows) == len(holds) == len({r["request_id"] for r in rows})
        assert {r["outcome"] for r in rows} <= {"ok", "orphaned"}
        assert_reconciled(engine, f"key:{owner}")
    finally:
        engine.dispose()


# -- the writer -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the kill, on purpose
async def test_a_writer_thread_that_dies_is_noticed_and_restarted(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "s.sqlite3", retry_seconds=0.05)
    ledger.start()
    try:
        thread = ledger._thread
        assert thread is not None and ledger.alive
        # Kill the thread for real: an asynchronous SystemExit raised inside it.
        assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)) == 1
        thread.join(5)
        assert not thread.is_alive() and not ledger.alive
        assert ledger.ensure_running() is True and ledger.restarts == 1 and ledger.alive
        assert ledger.ensure_running() is False
        record = a_record()
        await ledger.record(record)
        assert len(ledger_rows(engine, record.request_id)) == 1
    finally:
        ledger.close()


async def test_a_batch_on_a_connection_the_server_dropped_is_spooled_and_stored_once_on_a_fresh_one(pg_url, tmp_path):
    """The PostgreSQL batch runs on the raw psycopg connection under SQLAlchemy's: a
    connection PostgreSQL closed while it sat in the pool fails the batch as SQLAlchemy's
    OperationalError (so the writer spools it, holds and all), and is never handed out
    again: the replay stores the row, settles the hold and counts the charge exactly once."""
    engine = make_engine(pg_url, pool_size=1)
    try:
        owner = uid()
        reservation, _ = await a_hold(engine, owner, 100_000)
        with engine.connect() as conn:  # the pool's one connection, then back in the pool
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with make_engine(pg_url).connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
        ledger = SqlSpendLedger(engine, spool_path=tmp_path / "s.sqlite3")
        record = replace(a_record(owner=owner), reservation=reservation)
        assert await ledger.record(record) is None  # spooled, not stored
        assert ledger.db_healthy is False and ledger.spool_size() == 1
        assert ledger_rows(engine, record.request_id) == []
        ledger._replay_spool()
        ledger._replay_spool()
        assert ledger.db_healthy is True and ledger.spool_size() == 0
        assert len(ledger_rows(engine, record.request_id)) == 1
        assert counters(engine, f"key:{owner}") == {"d:2026-11-23": (8_700, 0), "m:2026-11": (8_700, 0)}
        assert_reconciled(engine, f"key:{owner}")
        ledger.spool.close()
    finally:
        engine.dispose()


# -- idempotency ------------------------------------------------------------------------------
async def test_an_in_progress_idempotency_key_expires_and_one_retry_takes_it_over(engine):
    store = SqlIdempotencyStore(engine, pending_seconds=120)
    owner, key = uid()[:32], "k-" + uid()
    now = datetime.now(UTC)
    assert await store.begin(owner, key, "h1", now) is None
    with pytest.raises(Conflict) as stuck:
        await store.begin(owner, key, "h1", now + timedelta(seconds=119))
    assert stuck.value.code == "idempotency_in_progress"
    with pytest.raises(Conflict) as reused:
        await store.begin(owner, key, "h2", now + timedelta(seconds=500))
    assert reused.value.code == "idempotency_key_reused"
    later = now + timedelta(seconds=121)
    results = []
    for _ in range(3):  # racing retries: the first takes the claim over, the rest wait
        try:
            results.append(await store.begin(owner, key, "h1", later))
        except Conflict as exc:
            results.append(exc.code)
    assert results == [None, "idempotency_in_progress", "idempotency_in_progress"]
    # The first request was only slow: its late answer or failure does not touch the claim
    # the retry took over.
    await store.abandon(owner, key, now)
    await store.finish(owner, key, 200, '{"late": true}', now)
    await store.finish(owner, key, 200, '{"ok": true}', later)
    answer = await store.begin(owner, key, "h1", later + timedelta(days=1))
    assert answer is not None and answer.status_code == 200  # a finished answer never expires
    assert answer.body == '{"ok": true}'


async def test_concurrent_takeovers_of_an_expired_key_have_one_winner(engine):
    store = SqlIdempotencyStore(engine, ThreadPoolExecutor(6), pending_seconds=1)
    owner, key = uid()[:32], "k-" + uid()
    now = datetime.now(UTC)
    assert await store.begin(owner, key, "h", now) is None
    async def attempt():
        try:
            return await store.begin(owner, key, "h", now + timedelta(seconds=5))
        except Conflict as exc:
            return exc.code
    results = await asyncio.gather(*[attempt() for _ in range(6)])
    assert results.count(None) == 1 and results.count("idempotency_in_progress") == 5


def test_token_usage_reported_clamps():
    u = TokenUsage.reported(-1, None, 5, 9)
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (0, 0, 0, 0)
    assert u.anomaly == "usage_negative"
    assert TokenUsage.reported(10, 5, 2, 1).anomaly is None
    assert TokenUsage.reported(float("nan"), 1).anomaly == "usage_invalid"
    assert TokenUsage.reported(True, 1).anomaly == "usage_invalid"


async def test_reconcile_reads_days_and_months_in_the_budget_time_zone(engine):
    """Counters are kept in BUDGET_TIMEZONE days and months: 20:00 UTC on 30 November is
    already 1 December in Seoul. Reconciled in the zone they were kept in, nothing drifts;
    read in another zone, the same rows land on other days (so the zone really is used)."""
    owner, late = uid(), datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    write_records(engine, [a_record(owner=owner, cost=Money(7_000), at=late)], tz=UTC)
    scope = f"key:{owner}"
    assert set(counters(engine, scope)) == {"d:2026-11-30", "m:2026-11"}
    kept = [d for d in reconcile(engine, late, tz=UTC) if d.scope == scope]
    assert {d.period for d in kept} == {"d:2026-11-30", "m:2026-11"}
    assert all(d.spent_drift == 0 and d.held_drift == 0 for d in kept), kept
    seoul = {d.period: d.spent_drift for d in reconcile(engine, tz=ZoneInfo("Asia/Seoul")) if d.scope == scope}
    assert seoul["d:2026-11-30"] == 7_000 and seoul["d:2026-12-01"] == -7_000
