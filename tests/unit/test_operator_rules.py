"""Budget periods in the budget time zone, the alert rules and once-per-period raising, and
the request-log entry's bounds: the core with its fakes."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from domain.adapters.fakes import FakeAlertSink, InMemoryAlertClaims, InMemoryRequestLog
from domain.alerts import AlertKind, RaiseAlert, budget_alert, circuit_alert, error_rate_alert
from domain.budgets import budget_lines, spend_lines
from domain.client_keys import BudgetLimits
from domain.money import Money
from domain.periods import budget_timezone, day_key, day_start, month_key, month_start, next_day_start
from domain.request_log import RequestLogEntry

UTC_1459 = datetime(2026, 11, 30, 14, 59, 59, 999999, tzinfo=UTC)  # 23:59:59.999999 KST, Nov 30
UTC_1500 = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 00:00 KST, Dec 1


def test_the_budget_day_rolls_over_at_midnight_kst_not_utc() -> None:
    assert day_key(UTC_1459) == "d:2026-11-30" and month_key(UTC_1459) == "m:2026-11"
    assert day_key(UTC_1500) == "d:2026-12-01" and month_key(UTC_1500) == "m:2026-12"
    # 09:00 KST is not a boundary any more (it was, when periods were UTC days)
    assert day_key(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == day_key(datetime(2026, 12, 1, 0, 1, tzinfo=UTC))
    assert day_start(UTC_1500) == UTC_1500 and day_start(UTC_1459) == datetime(2026, 11, 29, 15, tzinfo=UTC)
    assert month_start(UTC_1500) == UTC_1500
    assert month_start(UTC_1459) == datetime(2026, 10, 31, 15, tzinfo=UTC)
    assert next_day_start(UTC_1459) == UTC_1500


def test_budget_lines_and_spend_lines_name_the_local_periods() -> None:
    lines = budget_lines("key:a", BudgetLimits(daily=Money.from_usd(1)), BudgetLimits(), UTC_1500)
    assert {ln.period for ln in lines} == {"d:2026-12-01", "m:2026-12"}
    before = spend_lines("a", UTC_1459)
    assert {ln.period for ln in before} == {"d:2026-11-30", "m:2026-11"}
    # another zone, when the operator sets one
    ny = budget_timezone("America/New_York")
    assert {ln.period for ln in spend_lines("a", UTC_1500, ny)} == {"d:2026-11-30", "m:2026-11"}


def test_naive_times_are_utc_and_unknown_zones_are_refused() -> None:
    assert day_key(UTC_1500.replace(tzinfo=None)) == "d:2026-12-01"
    assert budget_timezone(None) == ZoneInfo("Asia/Seoul")
    with pytest.raises(Exception):  # noqa: B017 - ZoneInfoNotFoundError or ValueError, both refuse
        budget_timezone("Mars/Olympus")


def test_daylight_saving_days_are_local_calendar_days() -> None:
    ny = budget_timezone("America/New_York")
    before = datetime(2026, 3, 8, 4, 59, tzinfo=UTC)  # 23:59 EST on the 7th
    assert day_key(before, ny) == "d:2026-03-07"
    start = day_start(datetime(2026, 3, 8, 12, tzinfo=UTC), ny)
    assert next_day_start(start, ny) - start == timedelta(hours=23)  # the short day


def test_budget_alert_threshold_and_wording() -> None:
    cap = Money.from_usd(10)
    assert budget_alert(key_id="k", key_name="팀 A", period="day", spent=Money.from_usd("7.99"), cap=cap,
                        now=UTC_1500) is None
    alert = budget_alert(key_id="k", key_name="팀 A", period="day", spent=Money.from_usd(8), cap=cap, now=UTC_1500)
    assert alert is not None and alert.kind is AlertKind.BUDGET and alert.period == "d:2026-12-01"
    body = alert.payload()
    assert body["kind"] == "budget" and "팀 A" in body["text"] and body["key_name"] == "팀 A"
    assert body["percent"] == 80
    assert budget_alert(key_id="k", key_name="x", period="month", spent=Money.from_usd(1), cap=None,
                        now=UTC_1500) is None
    zero = budget_alert(key_id="k", key_name="x", period="month", spent=Money(0), cap=Money(0), now=UTC_1500)
    assert zero is not None and zero.period == "m:2026-12"
    half = budget_alert(key_id="k", key_name="x", period="day", spent=Money.from_usd(5), cap=cap, now=UTC_1500,
                        threshold_pct=Decimal(50))
    assert half is not None


def test_error_rate_alert_needs_enough_requests_and_a_rate_above_the_threshold() -> None:
    assert error_rate_alert(requests=4, errors=4, now=UTC_1500) is None
    assert error_rate_alert(requests=10, errors=2, now=UTC_1500) is None  # 0.2 is not above 0.2
    alert = error_rate_alert(requests=10, errors=3, now=UTC_1500)
    assert alert is not None and alert.payload()["kind"] == "error_rate" and alert.payload()["errors"] == 3
    later = error_rate_alert(requests=10, errors=3, now=UTC_1500 + timedelta(minutes=5))
    assert later is not None and later.period != alert.period


async def test_each_alert_is_raised_once_per_period() -> None:
    claims, sink = InMemoryAlertClaims(), FakeAlertSink()
    raise_alert = RaiseAlert(claims, sink)
    first = circuit_alert(upstream="default", now=UTC_1500)
    assert await raise_alert.execute(first, UTC_1500)
    assert not await raise_alert.execute(circuit_alert(upstream="default", now=UTC_1500 + timedelta(minutes=5)),
                                         UTC_1500)
    assert await raise_alert.execute(circuit_alert(upstream="azure", now=UTC_1500), UTC_1500)
    assert await raise_alert.execute(circuit_alert(upstream="default", now=UTC_1500 + timedelta(minutes=15)),
                                     UTC_1500)
    assert [a.subject for a in sink.sent] == ["upstream:default", "upstream:azure", "upstream:default"]
    # the budget alert of a new day is a new alert
    cap = Money.from_usd(1)
    day1 = budget_alert(key_id="k", key_name="n", period="day", spent=cap, cap=cap, now=UTC_1459)
    day2 = budget_alert(key_id="k", key_name="n", period="day", spent=cap, cap=cap, now=UTC_1500)
    assert day1 and day2
    assert await raise_alert.execute(day1, UTC_1459) and not await raise_alert.execute(day1, UTC_1459)
    assert await raise_alert.execute(day2, UTC_1500)


def test_request_log_entries_are_bounded_and_counted() -> None:
    log = InMemoryRequestLog()
    log.record(RequestLogEntry("r" * 5000, UTC_1500, "/v1/chat/completions", 200, model="m\x00" * 300))
    log.record(RequestLogEntry("a", UTC_1500, "/api/v1/chat", 402, error_code="budget_exceeded"))
    log.record(RequestLogEntry("b", UTC_1500, "/api/v1/chat", 399))
    e = log.entries[0]
    assert len(e.request_id) == 200 and e.model is not None and len(e.model) == 100 and "\x00" not in e.model
    assert log.counts() == (3, 1)


async def test_a_failed_webhook_is_not_retried_into_duplicates() -> None:
    from domain.alerts import Raised

    class DownSink:
        def __init__(self) -> None:
            self.tries = 0

        async def send(self, alert: object) -> bool:
            self.tries += 1
            return False

    sink = DownSink()
    raise_alert = RaiseAlert(InMemoryAlertClaims(), sink)
    alert = circuit_alert(upstream="default", now=UTC_1500)
    assert await raise_alert.execute(alert, UTC_1500) is Raised.UNDELIVERED
    assert await raise_alert.execute(alert, UTC_1500) is Raised.ALREADY and sink.tries == 1
    assert await RaiseAlert(InMemoryAlertClaims(), None).execute(alert, UTC_1500) is Raised.UNDELIVERED
