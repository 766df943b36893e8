"""SqlBudgetStore against real databases: reserve / settle / release arithmetic, and
concurrent reservations that must never overspend a cap."""
from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from domain.adapters.sql.database import make_engine
from domain.adapters.sql.repositories import SqlBudgetStore
from domain.budgets import GLOBAL_SCOPE, BudgetLine, budget_lines
from domain.client_keys import BudgetLimits
from domain.errors import BudgetExceeded
from domain.money import Money

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
DAY, MONTH = "d:2026-11-23", "m:2026-11"
USD = 1_000_000_000  # nanos


def counters(engine, scope: str) -> dict[str, tuple[int, int]]:
    """period → (spent, reserved), read straight from budget_counters."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT period, spent_nanos, reserved_nanos FROM budget_counters WHERE scope = :s"),
                            {"s": scope}).all()
    return {period: (spent, reserved) for period, spent, reserved in rows}


def open_reservations(engine, ids) -> int:
    with engine.connect() as conn:
        return sum(conn.execute(text("SELECT count(*) FROM budget_reservations WHERE id = :id"), {"id": i}).scalar_one()
                   for i in ids)


def new_scope() -> str:
    return f"key:{uuid.uuid4().hex}"


def test_budget_lines_cover_key_and_global_for_day_and_month():
    limits = BudgetLimits(daily=Money.from_usd("2"), monthly=None)
    lines = budget_lines("key:abc", limits, BudgetLimits(monthly=Money.from_usd("100")), NOW)
    assert lines == (
        BudgetLine("key:abc", DAY, Money(2 * USD)),
        BudgetLine("key:abc", MONTH, None),
        BudgetLine(GLOBAL_SCOPE, DAY, None),
        BudgetLine(GLOBAL_SCOPE, MONTH, Money(100 * USD)),
    )


async def test_reserve_settle_release_arithmetic(engine):
    scope = new_scope()
    store = SqlBudgetStore(engine)
    limits = BudgetLimits(daily=Money.from_usd("1"), monthly=Money.from_usd("5"))
    lines = budget_lines(scope, limits, BudgetLimits(), NOW)

    a = await store.reserve(lines, Money.from_usd("0.30"))
    assert counters(engine, scope) == {DAY: (0, 300_000_000), MONTH: (0, 300_000_000)}
    b = await store.reserve(lines, Money.from_usd("0.30"))
    assert counters(engine, scope) == {DAY: (0, 600_000_000), MONTH: (0, 600_000_000)}
    assert open_reservations(engine, [a.id, b.id]) == 2

    await store.settle(a, Money.from_usd("0.10"))  # worst case 0.30, actual 0.10
    assert counters(engine, scope) == {DAY: (100_000_000, 300_000_000), MONTH: (100_000_000, 300_000_000)}
    await store.release(b)
    assert counters(engine, scope) == {DAY: (100_000_000, 0), MONTH: (100_000_000, 0)}
    assert open_reservations(engine, [a.id, b.id]) == 0

    # Settling or releasing twice changes nothing: the reservation row is gone.
    await store.settle(a, Money.from_usd("0.10"))
    await store.release(a)
    await store.settle(b, Money.from_usd("0.50"))
    assert counters(engine, scope) == {DAY: (100_000_000, 0), MONTH: (100_000_000, 0)}
    assert await store.spent(scope, DAY) == Money.from_usd("0.10")
    assert await store.spent(scope, "d:1999-01-01") == Money.zero()

    # 0.10 spent + 0.95 > 1.00: refused; exactly up to the cap (0.10 + 0.90 = 1.00) is admitted.
    with pytest.raises(BudgetExceeded):
        await store.reserve(lines, Money.from_usd("0.95"))
    assert counters(engine, scope) == {DAY: (100_000_000, 0), MONTH: (100_000_000, 0)}
    c = await store.reserve(lines, Money.from_usd("0.90"))
    assert counters(engine, scope)[DAY] == (100_000_000, 900_000_000)
    with pytest.raises(BudgetExceeded):
        await store.reserve(lines, Money(1))
    await store.settle(c, Money.from_usd("0.85"))
    assert counters(engine, scope) == {DAY: (950_000_000, 0), MONTH: (950_000_000, 0)}


async def test_a_refused_reservation_adds_to_no_line(engine):
    # The daily line has room, the monthly one does not: nothing is reserved anywhere.
    scope = new_scope()
    store = SqlBudgetStore(engine)
    lines = budget_lines(scope, BudgetLimits(daily=Money.from_usd("1"), monthly=Money.from_usd("0.5")),
                         BudgetLimits(), NOW)
    before_global = counters(engine, GLOBAL_SCOPE).get(DAY, (0, 0))
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(lines, Money.from_usd("0.6"))
    assert info.value.code == "budget_exceeded"
    assert info.value.params["period"] == "monthly"
    assert counters(engine, scope) in ({}, {DAY: (0, 0), MONTH: (0, 0)})
    assert counters(engine, GLOBAL_SCOPE).get(DAY, (0, 0)) == before_global


async def test_global_cap_refuses_even_when_the_key_has_room(engine):
    scope = new_scope()
    store = SqlBudgetStore(engine)
    # A period of its own so that other tests' global spend does not count.
    period = f"d:{uuid.uuid4().hex[:12]}"
    lines = (BudgetLine(scope, period, None), BudgetLine(GLOBAL_SCOPE, period, Money(1_000)))
    r = await store.reserve(lines, Money(600))
    with pytest.raises(BudgetExceeded) as info:
        await store.reserve(lines, Money(600))
    assert info.value.params["scope"] == "global"
    await store.settle(r, Money(250))
    await store.reserve(lines, Money(750))  # 250 + 750 = 1000 = cap
    assert counters(engine, scope)[period] == (250, 750)


async def _race(urls: list[str], lines, amount: Money, attempts: int, workers: int) -> tuple[int, int]:
    """``attempts`` reservations at once through one store (own engine, own pool, own thread
    pool) per URL, as if from several replicas."""
    engines = [make_engine(url, pool_size=workers, pool_timeout=30) for url in urls]
    executors = [ThreadPoolExecutor(max_workers=workers) for _ in urls]
    stores = [SqlBudgetStore(e, ex) for e, ex in zip(engines, executors, strict=True)]
    try:
        results = await asyncio.gather(*(stores[i % len(stores)].reserve(lines, amount) for i in range(attempts)),
                                       return_exceptions=True)
    finally:
        for ex in executors:
            ex.shutdown()
        for e in engines:
            e.dispose()
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, BudgetExceeded)]
    assert not unexpected, [repr(u.__cause__) for u in unexpected][:3]
    ok = sum(1 for r in results if not isinstance(r, BaseException))
    return ok, len(results) - ok


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_fifty_concurrent_reservations_never_exceed_the_cap(request, backend):
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    scope = new_scope()
    worst = Money.from_usd("0.0123")  # one request's worst case
    cap_cases = 17
    lines = budget_lines(scope, BudgetLimits(daily=Money(worst.nanos * cap_cases)), BudgetLimits(), NOW)
    ok, refused = await _race([url, url], lines, worst, attempts=50, workers=20)
    assert (ok, refused) == (17, 33)
    engine = make_engine(url)
    try:
        spent, reserved = counters(engine, scope)[DAY]
        assert spent == 0
        assert reserved == 17 * 12_300_000 == 209_100_000
        assert spent + reserved <= worst.nanos * cap_cases
    finally:
        engine.dispose()


async def test_holds_taken_on_the_event_loop_never_exceed_the_cap(pg_url):
    """PsycopgBudgetStore (the chat_api's store on PostgreSQL): two stores, as two replicas,
    50 holds at once against a cap worth 17 — exactly 17 are granted, then settling works
    through the shared SQL path."""
    from domain.adapters.sql.psycopg_budgets import PsycopgBudgetStore

    scope = new_scope()
    worst = Money.from_usd("0.0123")
    lines = budget_lines(scope, BudgetLimits(daily=Money(worst.nanos * 17)), BudgetLimits(), NOW)
    capped_lines = tuple(ln for ln in lines if ln.limit is not None)
    engines = [make_engine(pg_url) for _ in range(2)]
    stores = [PsycopgBudgetStore(e, max_size=20, timeout=30) for e in engines]
    for s in stores:
        await s.open()
    try:
        results = await asyncio.gather(*(stores[i % 2].reserve(capped_lines, worst) for i in range(50)),
                                       return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, BudgetExceeded)]
        granted = [r for r in results if not isinstance(r, BaseException)]
        assert len(granted) == 17
        assert counters(engines[0], scope)[DAY] == (0, 17 * worst.nanos)
        await stores[0].settle(granted[0], Money(1_000))
        assert counters(engines[0], scope)[DAY] == (1_000, 16 * worst.nanos)
    finally:
        for s in stores:
            await s.aclose()


async def test_a_daily_cap_rolls_over_at_midnight_kst(engine):
    """A key that exhausted its daily cap at 23:59 KST (14:59 UTC) is admitted again at 00:00
    KST (15:00 UTC) — not at 09:00 KST, as with UTC days — while its month keeps counting."""
    from datetime import timedelta

    from domain.adapters.sql.ledger import write_records
    from domain.key_policy import KeySource
    from domain.ledger import UsageRecord
    from domain.usage import TokenUsage

    scope_id = uuid.uuid4().hex
    scope = f"key:{scope_id}"
    store = SqlBudgetStore(engine)
    limits = BudgetLimits(daily=Money.from_usd("1"), monthly=Money.from_usd("5"))
    before, midnight = datetime(2026, 11, 30, 14, 59, 59, tzinfo=UTC), datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    hold = await store.reserve(budget_lines(scope, limits, BudgetLimits(), before), Money.from_usd("1"))
    write_records(engine, [UsageRecord(
        request_id=uuid.uuid4().hex, created_at=before, client_key_id=scope_id, route="/api/v1/chat",
        model="gpt-4o-mini", usage=TokenUsage(input_tokens=1), cost=Money.from_usd("1"), catalog_version="t",
        key_source=KeySource.SERVER, latency_ms=1, reservation=hold)])
    assert counters(engine, scope) == {"d:2026-11-30": (USD, 0), "m:2026-11": (USD, 0)}
    with pytest.raises(BudgetExceeded):
        await store.reserve(budget_lines(scope, limits, BudgetLimits(), before + timedelta(microseconds=999_999)),
                            Money.from_usd("0.01"))
    # 09:00 KST of the same day (00:00 UTC) used to reset it: no longer
    with pytest.raises(BudgetExceeded):
        await store.reserve(budget_lines(scope, limits, BudgetLimits(), datetime(2026, 11, 30, 0, 0, tzinfo=UTC)),
                            Money.from_usd("0.01"))
    fresh = await store.reserve(budget_lines(scope, limits, BudgetLimits(), midnight), Money.from_usd("0.5"))
    assert {line.period for line in fresh.lines} == {"d:2026-12-01", "m:2026-12"}  # Dec 1 KST: a new month too


async def test_a_non_default_budget_timezone_is_used_for_holds_and_charges_alike(engine):
    """BUDGET_TIMEZONE=UTC: 23:30 UTC is still the 31st, for the hold (budget_lines) and for
    the charge the ledger settles (write_records' spend_lines), so the hold is released on
    the counter it was taken on and the charge counted there — none left on a KST day."""
    from zoneinfo import ZoneInfo

    from domain.adapters.sql.ledger import write_records
    from domain.key_policy import KeySource
    from domain.ledger import UsageRecord
    from domain.usage import TokenUsage

    utc_zone = ZoneInfo("UTC")
    scope_id = uuid.uuid4().hex
    scope = f"key:{scope_id}"
    store = SqlBudgetStore(engine)
    at = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # 08:30 KST on Nov 1
    limits = BudgetLimits(daily=Money.from_usd("1"), monthly=Money.from_usd("5"))
    hold = await store.reserve(budget_lines(scope, limits, BudgetLimits(), at, utc_zone), Money.from_usd("0.5"))
    assert {line.period for line in hold.lines} == {"d:2026-10-31", "m:2026-10"}
    write_records(engine, [UsageRecord(
        request_id=uuid.uuid4().hex, created_at=at, client_key_id=scope_id, route="/api/v1/chat",
        model="gpt-4o-mini", usage=TokenUsage(input_tokens=1), cost=Money.from_usd("0.25"), catalog_version="t",
        key_source=KeySource.SERVER, latency_ms=1, reservation=hold)], utc_zone)
    quarter = Money.from_usd("0.25").nanos
    assert counters(engine, scope) == {"d:2026-10-31": (quarter, 0), "m:2026-10": (quarter, 0)}
