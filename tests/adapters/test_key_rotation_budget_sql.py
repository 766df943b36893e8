"""A rotation never resets a budget, on PostgreSQL and SQLite: holds taken on the old key
before the rotation — settled by their ledger rows, or swept as stale — count on the
successor's budget; the counters reconcile with the ledger; ledger rows keep their own key."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain.adapters.clock import SystemClock
from domain.adapters.sql.ledger import SqlSpendLedger, sweep_stale_holds, write_records
from domain.adapters.sql.read_models.keys import key as key_view
from domain.adapters.sql.reconcile import reconcile
from domain.adapters.sql.repositories import SqlBudgetStore, SqlClientKeyRepository, SqlConversationRepository
from domain.budgets import HoldTag, budget_lines, capped
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.errors import BudgetExceeded
from domain.ledger import UsageRecord
from domain.money import Money
from domain.use_cases.client_keys import AuthenticateClient, IssueClientKey, RotateClientKey
from tests.adapters.test_repositories import a_record, ledger_rows, uid

SECRET = b"h" * 40
CAP = Money.from_usd("0.001")


async def _issue_and_auth(engine) -> tuple[SqlClientKeyRepository, ClientIdentity, str]:
    keys = SqlClientKeyRepository(engine)
    issued = await IssueClientKey(keys, SystemClock(), SECRET).execute(
        f"회전 {uid()[:6]}", BudgetLimits(daily=CAP, monthly=CAP))
    return keys, await AuthenticateClient(keys, SECRET, None).execute(issued.secret), issued.secret


async def _hold(engine, who: ClientIdentity, amount: Money, now: datetime):
    lines = capped(budget_lines(who.budget_scope, who.limits, BudgetLimits(), now))
    tag = HoldTag("req_" + uid(), who.key_id, "/v1/chat/completions", "gpt-4o-mini", "2026-11-01")
    return await SqlBudgetStore(engine).reserve(lines, amount, tag), tag


def _record(who: ClientIdentity, request_id: str, cost: Money, reservation, now: datetime) -> UsageRecord:
    # as the use cases build it: the caller's key, and the budget it draws on
    return replace(a_record(request_id=request_id, owner=who.key_id, cost=cost, reservation=reservation, at=now),
                   budget_key_id=who.budget_key_id)


async def test_a_request_in_flight_at_rotation_settles_on_the_successors_budget(engine):
    now = datetime.now(UTC)
    keys, old, _ = await _issue_and_auth(engine)
    hold, tag = await _hold(engine, old, Money.from_usd("0.0006"), now)  # the old key's request, in flight

    rotated = await RotateClientKey(keys, SystemClock(), SECRET).execute(old.key_id or "")
    new = await AuthenticateClient(keys, SECRET, None).execute(rotated.issued.secret)
    assert new.key_id != old.key_id and new.budget_scope == old.budget_scope
    view = key_view(engine, now, rotated.issued.key.id)
    assert view is not None and (view.spent_today_nanos, view.held_today_nanos) == (0, Money.from_usd("0.0006").nanos)
    # the successor sees the hold: 0.0006 held + 0.0005 > 0.001
    with pytest.raises(BudgetExceeded):
        await _hold(engine, new, Money.from_usd("0.0005"), now)

    # the old request ends after the rotation
    write_records(engine, [_record(old, tag.request_id, Money.from_usd("0.0004"), hold, now)])
    view = key_view(engine, now, rotated.issued.key.id)
    assert view is not None
    assert (view.spent_today_nanos, view.spent_month_nanos, view.held_today_nanos) == (
        Money.from_usd("0.0004").nanos, Money.from_usd("0.0004").nanos, 0)
    with pytest.raises(BudgetExceeded):  # 0.0004 spent + 0.0007 > 0.001
        await _hold(engine, new, Money.from_usd("0.0007"), now)
    fits, fits_tag = await _hold(engine, new, Money.from_usd("0.0006"), now)
    write_records(engine, [_record(new, fits_tag.request_id, Money.from_usd("0.0001"), fits, now)])

    [old_row] = ledger_rows(engine, tag.request_id)
    [new_row] = ledger_rows(engine, fits_tag.request_id)
    assert (old_row["client_key_id"], new_row["client_key_id"]) == (old.key_id, new.key_id)
    drifts = [d for d in reconcile(engine) if d.scope == new.budget_scope]
    assert drifts and all(d.spent_drift == 0 and d.held_drift == 0 for d in drifts), drifts
    assert {d.ledger_spent for d in drifts} == {Money.from_usd("0.0005").nanos}


async def test_a_stale_hold_of_the_old_key_is_charged_to_the_successors_budget(engine):
    now = datetime.now(UTC)
    keys, old, _ = await _issue_and_auth(engine)
    hold, tag = await _hold(engine, old, Money.from_usd("0.0003"), now)
    rotated = await RotateClientKey(keys, SystemClock(), SECRET).execute(old.key_id or "")
    second = await RotateClientKey(keys, SystemClock(), SECRET).execute(rotated.issued.key.id)
    assert second.issued.key.budget_key_id == old.key_id  # the chain keeps its first key's budget
    # the old key's replica died: its hold is swept as an orphaned row
    sweep_stale_holds(engine, datetime.now(UTC) + timedelta(seconds=1))
    [row] = ledger_rows(engine, tag.request_id)
    assert (row["outcome"], row["client_key_id"]) == ("orphaned", old.key_id)
    view = key_view(engine, now, second.issued.key.id)
    assert view is not None and (view.spent_today_nanos, view.held_today_nanos) == (Money.from_usd("0.0003").nanos, 0)
    drifts = [d for d in reconcile(engine) if d.scope == old.budget_scope]
    assert drifts and all(d.spent_drift == 0 and d.held_drift == 0 for d in drifts), drifts


def _stored(who: ClientIdentity, conversation: str | None = None, response_id: str | None = None) -> UsageRecord:
    # as ChatTurn builds it: the caller's key on the row, its chain on the turn and the budget
    record = replace(a_record(request_id="req_" + uid(), owner=who.key_id, conversation_id=conversation),
                     budget_key_id=who.budget_key_id, response_id=response_id)
    if record.turn is not None:
        record = replace(record, turn=replace(record.turn, owner=who.owner))
    return record


async def test_a_rotation_chain_owns_what_any_of_its_keys_stored(engine, tmp_path):
    """Conversations and stored responses are the chain's: a successor two rotations on
    reads its first key's turns and owns its responses (rows written before any rotation
    too: the first key's own id is the chain's); a key of another chain owns none."""
    keys, first, _ = await _issue_and_auth(engine)
    rotate = RotateClientKey(keys, SystemClock(), SECRET)
    second = await AuthenticateClient(keys, SECRET, None).execute(
        (await rotate.execute(first.key_id or "")).issued.secret)
    third = await AuthenticateClient(keys, SECRET, None).execute(
        (await rotate.execute(second.key_id or "")).issued.secret)
    _, stranger, _ = await _issue_and_auth(engine)
    assert first.owner == second.owner == third.owner == first.key_id != stranger.owner

    conversation, earlier, later, theirs = "c-" + uid(), "resp_" + uid(), "resp_" + uid(), "resp_" + uid()
    write_records(engine, [_stored(first, conversation, earlier), _stored(second, conversation, later),
                           _stored(stranger, conversation, theirs)])
    ledger = SqlSpendLedger(engine, spool_path=tmp_path / "spool.db")
    try:
        for response_id in (earlier, later):
            reference = await ledger.response_reference(response_id)
            assert reference is not None and reference.owner == third.owner
        reference = await ledger.response_reference(theirs)
        assert reference is not None and reference.owner == stranger.owner
    finally:
        ledger.close()
    history = SqlConversationRepository(engine)
    assert len(await history.recent_turns(third.owner, conversation, 10)) == 2
    assert len(await history.recent_turns(stranger.owner, conversation, 10)) == 1
