"""Operator alerts from the running gateway: a periodic check of budgets and the error rate,
and the call the upstream's circuit breaker makes when it opens.

Every replica runs the check; ``RaiseAlert`` claims each alert in the database first, so one
replica sends it, once per period.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from domain.adapters.sql.operator_records import SqlAlertClaims
from domain.adapters.sql.read_models import keys as key_reads
from domain.adapters.sql.read_models.request_log import request_window
from domain.adapters.webhook import HttpxWebhookAlertSink
from domain.alerts import (
    ERROR_RATE_WINDOW_SECONDS,
    Alert,
    RaiseAlert,
    Raised,
    budget_alert,
    circuit_alert,
    error_rate_alert,
)
from domain.money import Money

log = logging.getLogger(__name__)
T = TypeVar("T")


class AlertWatch:
    """``check`` raises what is due now; ``circuit_opened`` is for the provider's breaker
    (fire and forget: it never waits on the database or the webhook)."""

    def __init__(self, engine: Engine, executor: Executor, now: Callable[[], datetime], tz: ZoneInfo, *,
                 webhook_url: str | None, budget_pct: Decimal, error_rate: float) -> None:
        self._engine, self._executor, self._now, self._tz = engine, executor, now, tz
        self.claims = SqlAlertClaims(engine, executor)
        self._sink = HttpxWebhookAlertSink(webhook_url) if webhook_url else None
        self._raise = RaiseAlert(self.claims, self._sink)
        self._budget_pct, self._error_rate = budget_pct, error_rate
        self._tasks: set[asyncio.Task[bool]] = set()

    async def _db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def raise_alert(self, alert: Alert) -> bool:
        raised = await self._raise.execute(alert, self._now())
        if raised is Raised.DELIVERED:
            await self._db(lambda: self.claims.mark_delivered(alert))
        return bool(raised)

    def due(self, keys: list[key_reads.KeyView], window: tuple[int, int], now: datetime) -> list[Alert]:
        """What the rules say now: budget alerts per active capped key and period, and the
        error-rate alert."""
        out: list[Alert] = []
        for k in keys:
            if k.revoked_at is not None:
                continue
            for period, spent, cap in (("day", k.spent_today_nanos, k.daily_limit_nanos),
                                       ("month", k.spent_month_nanos, k.monthly_limit_nanos)):
                found = budget_alert(key_id=k.id, key_name=k.name, period=period, spent=Money(spent),
                                     cap=None if cap is None else Money(cap), threshold_pct=self._budget_pct,
                                     now=now, tz=self._tz, budget_key_id=k.budget_key_id)
                if found is not None:
                    out.append(found)
        rate = error_rate_alert(requests=window[0], errors=window[1], threshold=self._error_rate, now=now)
        if rate is not None:
            out.append(rate)
        return out

    async def check(self) -> list[Alert]:
        """One round: returns the alerts this call raised."""
        now = self._now()
        keys = await self._db(lambda: key_reads.keys(self._engine, now, tz=self._tz))
        window = await self._db(lambda: request_window(
            self._engine, now - timedelta(seconds=ERROR_RATE_WINDOW_SECONDS)))
        return [a for a in self.due(keys, window, now) if await self.raise_alert(a)]

    def circuit_opened(self, upstream: str, detail: str = "") -> None:
        """Call when an upstream's circuit opens (from the event loop)."""
        task = asyncio.get_running_loop().create_task(
            self.raise_alert(circuit_alert(upstream=upstream, now=self._now(), detail=detail)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.check()
            except Exception:  # the database may be away; try again next round
                log.warning("alert check failed", exc_info=True)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sink is not None:
            await self._sink.aclose()
