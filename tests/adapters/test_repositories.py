"""The SQL repositories and the spend ledger, with the same tests on PostgreSQL and SQLite.

The PostgreSQL database is shared by every test of the run: each test uses its own ids.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg.sql
import pytest
from sqlalchemy import select, text

from domain.adapters.sql.database import make_engine
from domain.adapters.sql.ledger import SqlSpendLedger, write_records
from domain.adapters.sql.repositories import SqlBudgetStore, SqlClientKeyRepository, SqlConversationRepository
from domain.adapters.sql.tables import ConversationRow
from domain.budgets import budget_lines
from domain.client_keys import BudgetLimits, ClientKey, hash_client_key
from domain.conversations import Turn
from domain.key_policy import FallbackReason, KeySource
from domain.ledger import UsageRecord
from domain.money import Money
from domain.usage import TokenUsage

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def uid() -> str:
    return uuid.uuid4().hex


def same_instant(stored: datetime, expected: datetime) -> bool:
    """PostgreSQL returns aware datetimes; SQLite may return naive UTC ones."""
    if stored.tzinfo is None:
        return stored == expected.astimezone(UTC).replace(tzinfo=None)
    return stored == expected


def a_key(**kw) -> ClientKey:
    key_id = uid()
    return ClientKey(id=key_id, short_id=key_id[:8], name=kw.pop("name", "team-" + key_id[:6]),
                     key_hash=hash_client_key(b"test-secret", "llms-" + key_id), created_at=kw.pop("created_at", T0),
                     **kw)


def a_record(*, request_id: str | None = None, owner: str | None = None, conversation_id: str | None = None,
             prompt: str = "질문", reply: str = "답변", cost: Money | None = Money(8_700),
             key_source: KeySource = KeySource.SERVER, reservation=None, at: datetime = T0) -> UsageRecord:
    request_id = request_id or uid()
    turn = None
    if conversation_id is not None:
        turn = Turn(conversation_id, owner, request_id, at, "system says", prompt, reply, "gpt-4o-mini")
    return UsageRecord(request_id=request_id, created_at=at, client_key_id=owner, route="/api/v1/chat",
                       model="gpt-4o-mini", usage=TokenUsage(input_tokens=10, output_tokens=12, cached_input_tokens=4,
                                                             reasoning_tokens=2),
                       cost=cost, catalog_version="2026-11-01", key_source=key_source, latency_ms=321,
                       fallback_reason=FallbackReason.USER_KEY_REJECTED if key_source is KeySource.SERVER else None,
                       conversation_id=conversation_id, reservation=reservation, turn=turn)


def ledger_rows(engine, *request_ids: str) -> list[dict]:
    with engine.connect() as conn:
        out = []
        for rid in request_ids:
            out += [dict(r._mapping) for r in conn.execute(
                text("SELECT * FROM spend_ledger WHERE request_id = :r ORDER BY id"), {"r": rid})]
        return out


# -- client keys ------------------------------------------------------------------------------
async def test_client_key_add_and_look_up_by_hash_and_id(engine):
    repo = SqlClientKeyRepository(engine)
    key = a_key(limits=BudgetLimits(daily=Money.from_usd("2"), monthly=None), may_use_server_key=False)
    await repo.add(key)
    by_hash = await repo.by_hash(key.key_hash)
    by_id = await repo.get(key.id)
    for found in (by_hash, by_id):
        assert found is not None
        assert (found.id, found.short_id, found.name, found.key_hash) == (key.id, key.short_id, key.name, key.key_hash)
        assert found.limits == BudgetLimits(daily=Money(2_000_000_000), monthly=None)
        assert found.may_use_server_key is False
        assert found.revoked is False
        assert same_instant(found.created_at, T0)
    assert await repo.by_hash(hash_client_key(b"test-secret", "llms-unknown")) is None
    assert await repo.get(uid()) is None


async def test_client_key_list_includes_every_added_key_in_creation_order(engine):
    repo = SqlClientKeyRepository(engine)
    older = a_key(created_at=T0 - timedelta(days=400))
    newer = a_key(created_at=T0 - timedelta(days=399))
    await repo.add(newer)
    await repo.add(older)
    ids = [k.id for k in await repo.list()]
    assert ids.index(older.id) < ids.index(newer.id)


async def test_client_key_revoke(engine):
    repo = SqlClientKeyRepository(engine)
    key = a_key()
    await repo.add(key)
    at = T0 + timedelta(hours=1)
    assert await repo.revoke(key.id, at) is True
    stored = await repo.get(key.id)
    assert stored.revoked is True and same_instant(stored.revoked_at, at)
    assert (await repo.by_hash(key.key_hash)).revoked is True  # still found, so it can be refused as revoked
    assert await repo.revoke(uid(), at) is False


async def test_client_key_set_limits(engine):
    repo = SqlClientKeyRepository(engine)
    key = a_key()
    await repo.add(key)
    assert (await repo.get(key.id)).limits == BudgetLimits()
    assert await repo.set_limits(key.id, BudgetLimits(daily=Money.from_usd("0.5"), monthly=Money.from_usd("12.25")))
    assert (await repo.get(key.id)).limits == BudgetLimits(Money(500_000_000), Money(12_250_000_000))
    assert await repo.set_limits(key.id, BudgetLimits(daily=None, monthly=Money.from_usd("3")))
    assert (await repo.get(key.id)).limits == BudgetLimits(None, Money(3_000_000_000))
    assert await repo.set_limits(uid(), BudgetLimits()) is False


async def test_client_key_hash_is_unique(engine):
    repo = SqlClientKeyRepository(engine)
    key = a_key()
    await repo.add(key)
    with pytest.raises(Exception):  # noqa: B017 (IntegrityError, wrapped differently per driver)
        await repo.add(replace(key, id=uid()))


# -- spend ledger -----------------------------------------------------------------------------
async def test_ledger_writes_every_field_of_a_record(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    owner, conv = uid()[:32], "conv-" + uid()
    record = a_record(owner=owner, conversation_id=conv)
    assert await ledger.record(record) == 1
    [row] = ledger_rows(engine, record.request_id)
    assert row["client_key_id"] == owner
    assert row["route"] == "/api/v1/chat" and row["model"] == "gpt-4o-mini"
    tokens = (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"], row["reasoning_tokens"])
    assert tokens == (10, 4, 12, 2)
    assert (row["cost_nanos"], row["charged_nanos"]) == (8_700, 8_700)
    assert bool(row["priced"]) is True and bool(row["estimated"]) is False
    assert (row["key_source"], row["fallback_reason"], row["outcome"]) == ("server", "user_key_rejected", "ok")
    assert row["catalog_version"] == "2026-11-01" and row["latency_ms"] == 321
    assert row["conversation_id"] is not None
    turns = await SqlConversationRepository(engine).recent_turns(owner, conv, 10)
    assert [(t.turn_index, t.prompt, t.reply, t.system_prompt, t.request_id) for t in turns] == [
        (1, "질문", "답변", "system says", record.request_id)]


async def test_ledger_user_key_and_unpriced_rows(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    user = a_record(key_source=KeySource.USER)
    unpriced = a_record(cost=None)
    ledger.submit(user)
    ledger.submit(unpriced)
    [u] = ledger_rows(engine, user.request_id)
    [n] = ledger_rows(engine, unpriced.request_id)
    assert (u["key_source"], u["cost_nanos"], u["charged_nanos"]) == ("user", 8_700, 0)
    assert (n["cost_nanos"], n["charged_nanos"], bool(n["priced"])) == (None, 0, False)


async def test_ledger_is_idempotent_by_request_id(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    owner, conv = uid(), "conv-" + uid()
    record = a_record(owner=owner, conversation_id=conv)
    assert await ledger.record(record) == 1
    assert await ledger.record(record) is None
    ledger.submit(record)
    assert write_records(engine, [record, record]) == [None, None]
    assert len(ledger_rows(engine, record.request_id)) == 1
    assert len(await SqlConversationRepository(engine).recent_turns(owner, conv, 10)) == 1


async def test_ledger_settles_the_reservation_of_a_record_once(engine, tmp_path):
    owner = uid()
    scope = f"key:{owner}"  # the charge is counted on the record's client's lines
    budgets = SqlBudgetStore(engine)
    lines = budget_lines(scope, BudgetLimits(daily=Money.from_usd("1")), BudgetLimits(), T0)
    reservation = await budgets.reserve(lines, Money(500_000))
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    record = a_record(owner=owner, reservation=reservation, cost=Money(8_700))
    await ledger.record(record)
    await ledger.record(record)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT period, spent_nanos, reserved_nanos FROM budget_counters WHERE scope = :s"),
                            {"s": scope}).all()
    assert sorted(tuple(r) for r in rows) == [("d:2026-11-23", 8_700, 0), ("m:2026-11", 8_700, 0)]


async def test_ledger_settles_a_user_key_reservation_at_zero(engine, tmp_path):
    scope = f"key:{uid()}"
    budgets = SqlBudgetStore(engine)
    reservation = await budgets.reserve(budget_lines(scope, BudgetLimits(), BudgetLimits(), T0), Money(500_000))
    await SqlSpendLedger(engine, spool_path=tmp_path / "s.sqlite3").record(
        a_record(reservation=reservation, key_source=KeySource.USER))
    assert await budgets.spent(scope, "d:2026-11-23") == Money.zero()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT reserved_nanos FROM budget_counters WHERE scope = :s AND period = :p"),
                            {"s": scope, "p": "d:2026-11-23"}).scalar_one() == 0


@pytest.mark.parametrize("writers", [2, 6])
async def test_turns_written_concurrently_get_consecutive_indexes(db_url, writers):
    engine = make_engine(db_url, pool_size=writers)
    owner, conv = uid(), "conv-" + uid()
    records = [a_record(owner=owner, conversation_id=conv, prompt=f"p{i}") for i in range(writers)]
    barrier = threading.Barrier(writers)

    def write(record):
        barrier.wait()
        return write_records(engine, [record])[0]

    try:
        with ThreadPoolExecutor(writers) as pool:
            indexes = list(pool.map(write, records))
        assert sorted(indexes) == list(range(1, writers + 1))
        turns = await SqlConversationRepository(engine).recent_turns(owner, conv, 100)
        assert [t.turn_index for t in turns] == list(range(1, writers + 1))
        assert sorted(t.prompt for t in turns) == sorted(f"p{i}" for i in range(writers))
        by_prompt = {r.prompt: i for r, i in zip((r.turn for r in records), indexes, strict=True)}
        assert {t.prompt: t.turn_index for t in turns} == by_prompt
    finally:
        engine.dispose()


async def test_one_batch_with_turns_of_several_conversations_numbers_each_its_own(engine):
    """The batch finds its conversations with one statement over every (owner, name) pair:
    the same name under two owners, and an anonymous owner, stay apart."""
    alice, bob, conv, other = uid(), uid(), "batch-" + uid(), "batch-" + uid()
    batch = [a_record(owner=alice, conversation_id=conv, prompt="a1"), a_record(owner=bob, conversation_id=conv,
             prompt="b1"), a_record(owner=alice, conversation_id=other, prompt="o1"),
             a_record(owner=None, conversation_id=conv, prompt="n1"), a_record(owner=alice, conversation_id=conv,
             prompt="a2"), a_record(owner=alice)]
    assert write_records(engine, batch) == [1, 1, 1, 1, 2, None]
    assert write_records(engine, [a_record(owner=bob, conversation_id=conv, prompt="b2")]) == [2]
    repo = SqlConversationRepository(engine)
    assert [(t.prompt, t.turn_index) for t in await repo.recent_turns(alice, conv, 50)] == [("a1", 1), ("a2", 2)]
    assert [(t.prompt, t.turn_index) for t in await repo.recent_turns(bob, conv, 50)] == [("b1", 1), ("b2", 2)]
    assert [t.prompt for t in await repo.recent_turns(alice, other, 50)] == ["o1"]
    assert [t.prompt for t in await repo.recent_turns(None, conv, 50)] == ["n1"]
    # a later turn moves the conversation's updated_at, never its created_at
    later = T0 + timedelta(hours=1)
    assert write_records(engine, [a_record(owner=alice, conversation_id=conv, prompt="a3", at=later)]) == [3]
    with engine.connect() as conn:
        created, updated, count = conn.execute(
            select(ConversationRow.created_at, ConversationRow.updated_at, ConversationRow.turn_count)
            .where(ConversationRow.owner == alice, ConversationRow.external_id == conv)).one()
    assert same_instant(created, T0) and same_instant(updated, later) and count == 3


async def test_started_ledger_writes_from_its_thread_and_close_drains(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3", retry_seconds=0.05)
    ledger.start()
    owner, conv = uid(), "conv-" + uid()
    try:
        first = await ledger.record(a_record(owner=owner, conversation_id=conv))
        second = await ledger.record(a_record(owner=owner, conversation_id=conv))
        loose = [a_record() for _ in range(5)]
        for r in loose:
            ledger.submit(r)
    finally:
        ledger.close()
    assert (first, second) == (1, 2)
    assert len(ledger_rows(engine, *(r.request_id for r in loose))) == 5
    assert ledger.spool_size() == 0


# -- conversations ---------------------------------------------------------------------------
async def test_recent_turns_are_scoped_by_owner_and_limited_to_the_newest(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    alice, bob, conv = uid(), uid(), "shared-name-" + uid()
    for i in range(4):
        await ledger.record(a_record(owner=alice, conversation_id=conv, prompt=f"alice {i}"))
    await ledger.record(a_record(owner=bob, conversation_id=conv, prompt="bob 0"))
    repo = SqlConversationRepository(engine)
    assert [t.prompt for t in await repo.recent_turns(alice, conv, 50)] == [f"alice {i}" for i in range(4)]
    assert [t.prompt for t in await repo.recent_turns(alice, conv, 2)] == ["alice 2", "alice 3"]
    assert [(t.prompt, t.turn_index) for t in await repo.recent_turns(bob, conv, 50)] == [("bob 0", 1)]
    assert await repo.recent_turns(uid(), conv, 50) == []
    assert await repo.recent_turns(None, conv, 50) == []
    assert all(t.owner == alice for t in await repo.recent_turns(alice, conv, 50))


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
async def test_replaying_a_long_conversation_reads_only_its_newest_turns(pg_url, plan_cache_mode):
    """The history read of every turn must not grow with the conversation: whatever plan
    PostgreSQL picks (the generic one psycopg's prepared statement ends up with, or a
    custom one), it reads the newest turns only, not every stored turn to sort them."""
    from domain.adapters.sql.psycopg_history import _psycopg_sql

    engine = make_engine(pg_url)
    owner, conv = uid(), "long-" + uid()
    try:
        write_records(engine, [a_record(owner=owner, conversation_id=conv, prompt=f"q{i}") for i in range(300)])
        sql, bound = _psycopg_sql(10)
        raw = engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cur:
                cur.execute(f"SET plan_cache_mode = {plan_cache_mode}")
                given = {**{k: str(v) for k, v in bound.items()}, "owner": "$1", "external_id": "$2"}
                cur.execute("PREPARE recent AS " + re.sub(r"%\((\w+)\)s", lambda m: given[m[1]], sql))
                cur.execute(psycopg.sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE recent({}, {})").format(
                    psycopg.sql.Literal(owner), psycopg.sql.Literal(conv)))
                [plan] = cur.fetchone()[0]
                cur.execute("DEALLOCATE recent")
        finally:
            raw.close()
        read = [n["Actual Rows"] for n in _nodes(plan["Plan"]) if n.get("Relation Name") == "turns"]
        assert read and max(read) <= 10, plan
        turns = await SqlConversationRepository(engine).recent_turns(owner, conv, 10)
        assert [t.prompt for t in turns] == [f"q{i}" for i in range(290, 300)]
        assert [t.turn_index for t in turns] == list(range(291, 301))
    finally:
        engine.dispose()


async def test_anonymous_conversations_are_their_own_owner(engine, tmp_path):
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
    conv = "anon-" + uid()
    await ledger.record(a_record(owner=None, conversation_id=conv, prompt="익명"))
    repo = SqlConversationRepository(engine)
    assert [t.prompt for t in await repo.recent_turns(None, conv, 10)] == ["익명"]
    assert await repo.recent_turns(uid(), conv, 10) == []


# -- the spool ------------------------------------------------------------------------------
async def test_records_spool_while_the_database_is_away_and_replay_exactly_once(engine, tmp_path):
    spool = tmp_path / "ledger-spool.sqlite3"
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x", pool_timeout=1)
    owner, conv = uid(), "conv-" + uid()
    scope = f"key:{owner}"
    reservation = await SqlBudgetStore(engine).reserve(
        budget_lines(scope, BudgetLimits(daily=Money.from_usd("1")), BudgetLimits(), T0), Money(100_000))
    records = [a_record(owner=owner, conversation_id=conv, prompt="첫 질문", reservation=reservation),
               a_record(owner=owner, conversation_id=conv, prompt="둘째 질문"),
               a_record(cost=None, key_source=KeySource.USER)]
    try:
        away = SqlSpendLedger(down, spool_path=spool)
        for r in records:
            away.submit(r)
        assert await away.record(a_record(request_id=records[0].request_id)) is None  # spooled too (a duplicate)
        assert away.db_healthy is False
        assert away.spooled == 4
        assert away.spool_size() == 4
        spooled = [json.loads(payload) for _, payload in away.spool.take(10)]
        assert [d["request_id"] for d in spooled[:3]] == [r.request_id for r in records]
        assert ledger_rows(engine, *(r.request_id for r in records)) == []
        away._replay_spool()  # still down: the spool is kept
        assert away.spool_size() == 4
        away.spool.close()
    finally:
        down.dispose()

    backup = tmp_path / "copy.sqlite3"
    shutil.copy(spool, backup)
    back = SqlSpendLedger(engine, spool_path=spool)
    back._replay_spool()
    assert back.spool_size() == 0
    assert back.db_healthy is True
    back.spool.close()
    shutil.copy(backup, spool)  # replaying the same spool again changes nothing
    back.start()
    back.close()
    assert SqlSpendLedger(engine, spool_path=spool).spool_size() == 0

    rows = ledger_rows(engine, *(r.request_id for r in records))
    assert [r["request_id"] for r in rows] == [r.request_id for r in records]
    assert rows[2]["cost_nanos"] is None and rows[2]["key_source"] == "user"
    turns = await SqlConversationRepository(engine).recent_turns(owner, conv, 10)
    assert [(t.turn_index, t.prompt) for t in turns] == [(1, "첫 질문"), (2, "둘째 질문")]
    assert await SqlBudgetStore(engine).spent(scope, "d:2026-11-23") == Money(2 * 8_700)  # both turns' charges


async def test_a_record_the_database_refuses_is_set_aside_and_still_settles_its_budget(pg_url, tmp_path):
    """PostgreSQL refuses a 300-character conversation name (the dialects never let one
    through; it stands for any data the database refuses): that record is set aside in the
    spool file, its hold released and its charge counted all the same, its batch-mates are
    stored, and nothing is retried forever."""
    engine = make_engine(pg_url)
    try:
        owner = uid()
        scope = f"key:{owner}"
        reservation = await SqlBudgetStore(engine).reserve(
            budget_lines(scope, BudgetLimits(daily=Money.from_usd("1")), BudgetLimits(), T0), Money(100_000))
        ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.sqlite3")
        good = a_record()
        bad = a_record(owner=owner, conversation_id="c" * 300, reservation=reservation)
        ledger.start()
        ledger.submit(good)
        ledger.submit(bad)
        ledger.close()
        assert len(ledger_rows(engine, good.request_id)) == 1
        assert ledger_rows(engine, bad.request_id) == []
        [(reason, payload)] = ledger.spool.set_aside_entries()
        assert "refused" in reason and json.loads(payload)["request_id"] == bad.request_id
        assert ledger.spool_size() == 0 and ledger.set_aside == 1
        with engine.connect() as conn:
            counters = conn.execute(text("SELECT period, spent_nanos, reserved_nanos FROM budget_counters "
                                         "WHERE scope = :s ORDER BY period"), {"s": scope}).all()
        assert [tuple(c) for c in counters] == [("d:2026-11-23", 8_700, 0), ("m:2026-11", 8_700, 0)]
    finally:
        engine.dispose()


# -- personal data ---------------------------------------------------------------------------
async def test_client_key_pii_policy_is_stored_changed_and_cleared(engine):
    from domain.pii import PiiPolicy

    repo = SqlClientKeyRepository(engine)
    key, plain = a_key(pii_policy=PiiPolicy.BLOCK), a_key()
    await repo.add(key)
    await repo.add(plain)
    assert (await repo.get(key.id)).pii_policy is PiiPolicy.BLOCK
    assert (await repo.get(plain.id)).pii_policy is None  # the server's PII_POLICY
    assert await repo.set_pii_policy(key.id, PiiPolicy.OFF)
    assert (await repo.by_hash(key.key_hash)).pii_policy is PiiPolicy.OFF
    assert await repo.set_pii_policy(key.id, None)
    assert (await repo.get(key.id)).pii_policy is None
    assert not await repo.set_pii_policy(uid(), PiiPolicy.MASK)


async def test_ledger_keeps_pii_counts_per_kind_through_the_database_and_the_spool(engine, tmp_path):
    from domain.adapters.sql.ledger import record_from_json, record_to_json

    counted = replace(a_record(), pii_counts={"phone": 2, "rrn": 1})
    assert record_from_json(json.loads(json.dumps(record_to_json(counted)))) == counted
    none = a_record()
    write_records(engine, [counted, none])
    rows = ledger_rows(engine, counted.request_id, none.request_id)
    assert json.loads(rows[0]["pii_counts"]) == {"phone": 2, "rrn": 1}
    assert rows[1]["pii_counts"] is None


async def test_ledger_keeps_the_served_upstream_beside_pii_counts_through_the_database_and_the_spool(engine):
    from domain.adapters.sql.ledger import record_from_json, record_to_json

    routed = replace(a_record(), pii_counts={"email": 1}, upstream="azure-kc", upstream_attempts=2)
    assert record_from_json(json.loads(json.dumps(record_to_json(routed)))) == routed
    plain = a_record()
    write_records(engine, [routed, plain])
    rows = ledger_rows(engine, routed.request_id, plain.request_id)
    assert (rows[0]["upstream"], rows[0]["upstream_attempts"], json.loads(rows[0]["pii_counts"])) == \
        ("azure-kc", 2, {"email": 1})
    assert (rows[1]["upstream"], rows[1]["upstream_attempts"], rows[1]["pii_counts"]) == (None, 1, None)


def test_pii_counts_are_summed_per_kind_and_key_in_the_database(engine):
    from domain.adapters.sql.read_models.pii import pii_counts
    from domain.adapters.sql.read_models.shared import LedgerFilter

    alice, bob = uid(), uid()
    write_records(engine, [replace(a_record(owner=alice), pii_counts={"phone": 2, "rrn": 1}),
                           replace(a_record(owner=alice), pii_counts={"phone": 1}),
                           replace(a_record(owner=bob), pii_counts={"card": 3}), a_record(owner=bob),
                           replace(a_record(owner=alice, at=T0 - timedelta(days=40)), pii_counts={"email": 9})])
    found = pii_counts(engine, LedgerFilter(since=T0 - timedelta(days=1), client_key_id=alice))
    assert found.total == {"phone": 3, "rrn": 1}
    assert [(k.client_key_id, k.counts) for k in found.by_key] == [(alice, {"phone": 3, "rrn": 1})]
    both = pii_counts(engine, LedgerFilter(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1)))
    mine = {k.client_key_id: k.counts for k in both.by_key if k.client_key_id in (alice, bob)}
    assert mine == {alice: {"phone": 3, "rrn": 1}, bob: {"card": 3}}
