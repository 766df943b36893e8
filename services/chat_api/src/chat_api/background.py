"""Background responses: polled until terminal, then settled from their final usage."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from domain.adapters.openai_provider import responses_text, usage_from
from domain.adapters.sql.background import PendingResponse, SqlBackgroundResponses
from domain.errors import UpstreamError
from domain.ports import Clock, LlmProvider, PriceCatalog, SpendLedger, UpstreamApi
from domain.use_cases.background import TERMINAL, backoff_seconds, settle_background

log = logging.getLogger(__name__)


class BackgroundPoller:
    """Every replica polls the due pending responses (each claimed by one replica at a
    time), with a doubling delay capped at ``max_delay``; a response still unfinished after
    ``give_up_after`` — or one the upstream no longer knows — is settled at its hold.
    A client's GET of a terminal response settles it at once (``observe``)."""

    def __init__(self, store: SqlBackgroundResponses, provider: LlmProvider, prices: PriceCatalog,
                 ledger: SpendLedger, clock: Clock, executor: ThreadPoolExecutor, server_key: str | None, *,
                 first_delay: float = 2.0, max_delay: float = 60.0,
                 give_up_after: timedelta = timedelta(hours=24)) -> None:
        self.store, self._provider, self._prices, self._ledger = store, provider, prices, ledger
        self._clock, self._executor, self._server_key = clock, executor, server_key
        self._first, self._max, self._give_up = first_delay, max_delay, give_up_after
        store.first_poll = timedelta(seconds=first_delay)
        self.settled = 0

    async def _db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.poll_due()
            except Exception:  # the database or the upstream may be away: next round
                log.warning("background response poll failed", exc_info=True)

    async def poll_due(self) -> int:
        lease = timedelta(seconds=max(30.0, self._max))
        due: list[PendingResponse] = await self._db(self.store.claim_due, self._clock.now(), lease)
        done = 0
        for pending in due:
            done += await self._poll(pending)
        return done

    async def _poll(self, pending: PendingResponse) -> int:
        now = self._clock.now()
        if self._server_key is None or now - pending.created_at > self._give_up:
            await self._settle(pending, {"status": "incomplete", "usage": None})
            return 1
        try:
            body = await self._provider.get_response(pending.response_id, self._server_key)
        except UpstreamError as error:
            if error.upstream_status == 404:  # the upstream forgot it: charged at its hold
                await self._settle(pending, {"status": "failed", "usage": None})
                return 1
            body = {}
        if body.get("status") in TERMINAL:
            await self._settle(pending, body)
            return 1
        attempts = pending.attempts + 1
        await self._db(self.store.reschedule, pending.response_id, attempts,
                       now + timedelta(seconds=backoff_seconds(attempts, self._first, self._max)))
        return 0

    async def observe(self, response_id: str, body: dict[str, Any]) -> None:
        """A response fetched by its owner: if it is finished and still pending here, settle
        it now. Never fails the fetch."""
        if body.get("status") not in TERMINAL:
            return
        try:
            pending = await self._db(self.store.find, response_id)
            if pending is not None:
                await self._settle(pending, body)
        except Exception:
            log.warning("could not settle background response on fetch", exc_info=True)

    async def _settle(self, pending: PendingResponse, body: dict[str, Any]) -> None:
        usage = usage_from(UpstreamApi.RESPONSES, body.get("usage"))
        model = body.get("model") if isinstance(body.get("model"), str) else None
        final = settle_background(pending.record, status=str(body.get("status")), usage=usage, model=model,
                                  text=responses_text(body) if body.get("output") else "", prices=self._prices,
                                  now=self._clock.now(), pii_policy=pending.pii_policy)
        await self._ledger.record(final)  # idempotent by request id; settles the hold
        await self._db(self.store.forget, pending.response_id)
        self.settled += 1
