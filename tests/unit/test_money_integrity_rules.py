"""The core's money-integrity rules: what an anomalous or background row is charged, and
how background responses are polled."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from domain.budgets import BudgetLine, Reservation
from domain.conversations import Turn
from domain.key_policy import KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.usage import TokenUsage
from domain.use_cases.background import backoff_seconds, settle_background

T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
HOLD = Reservation("h1", (BudgetLine("key:k", "d:2026-11-30", Money(10**9)),), Money(50_000))


def a_record(**kw: object) -> UsageRecord:
    base = UsageRecord(request_id="r1", created_at=T0, client_key_id="k", route="/v1/responses", model="gpt-4o-mini",
                       usage=TokenUsage(), cost=Money(0), catalog_version="t", key_source=KeySource.SERVER,
                       reservation=HOLD, response_id="resp_1",
                       turn=Turn("c", "k", "r1", T0, "", "질문", "", "gpt-4o-mini"))
    return replace(base, **kw)


def test_a_row_whose_usage_was_normalised_is_charged_at_least_its_hold():
    assert a_record(usage=TokenUsage.reported(-5, 3)).charged == HOLD.amount
    assert a_record(usage=TokenUsage(anomaly="usage_missing")).charged == HOLD.amount
    assert a_record(usage=TokenUsage.reported(-5, 3), cost=Money(90_000)).charged == Money(90_000)  # more than held
    assert a_record(usage=TokenUsage(10, 3)).charged == Money(0)  # exact usage: its exact cost
    assert a_record(usage=TokenUsage.reported(-5, 3), key_source=KeySource.USER).charged == Money(0)
    assert a_record(usage=TokenUsage.reported(-5, 3), reservation=None).charged == Money(0)


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(n, 2.0, 60.0) for n in range(7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_seconds(10**6) == 60.0


def test_a_finished_background_response_is_priced_from_its_final_usage():
    from domain.adapters.prices import load_price_catalog  # the shipped catalogue (data, no I/O beyond it)

    prices = load_price_catalog(None)
    final = settle_background(a_record(), status="completed", usage=TokenUsage(1_000, 200), model="gpt-4o-mini",
                              text="답", prices=prices, now=T0)
    assert final.usage == TokenUsage(1_000, 200) and not final.estimated and final.outcome is Outcome.OK
    assert final.cost == prices.price_of("gpt-4o-mini").cost(TokenUsage(1_000, 200)) and final.charged == final.cost
    assert final.turn is not None and final.turn.reply == "답"
    assert final.reservation == HOLD  # storing it settles the hold


def test_a_background_response_without_usage_is_charged_its_hold_not_nothing():
    from domain.adapters.prices import load_price_catalog

    for status in ("cancelled", "failed", "incomplete", "completed"):
        final = settle_background(a_record(), status=status, usage=None, model=None, text="",
                                  prices=load_price_catalog(None), now=T0)
        assert final.estimated and final.cost == HOLD.amount and final.charged == HOLD.amount
        assert (final.outcome is Outcome.OK) == (status == "completed")
        assert final.error_code == (None if status == "completed" else f"background_{status}")


def test_a_background_reply_is_stored_masked_under_the_requests_policy_and_counts_survive():
    """The reply a background response stores later is masked as a normal turn's would be
    (mask and block alike, never counted); ``off`` stores it as is. The request's PII counts
    (already on the record) are kept on the settled row."""
    from domain.adapters.prices import load_price_catalog
    from domain.pii import PiiPolicy

    reply = "연락처는 010-2345-6789 입니다"
    template = a_record(pii_counts={"phone": 1})
    for policy in (PiiPolicy.MASK, PiiPolicy.BLOCK, PiiPolicy.OFF):
        final = settle_background(template, status="completed", usage=TokenUsage(10, 5), model=None, text=reply,
                                  prices=load_price_catalog(None), now=T0, pii_policy=policy)
        assert final.turn is not None
        assert ("010-2345-6789" in final.turn.reply) == (policy is PiiPolicy.OFF)
        assert dict(final.pii_counts) == {"phone": 1}
