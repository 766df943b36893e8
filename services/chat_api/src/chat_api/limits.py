"""Per-client request rate and concurrent-stream limits (per replica)."""
from __future__ import annotations

import time
from collections import OrderedDict

from domain.errors import RateLimited


class MinuteQuota:
    """A fixed one-minute allowance per client (requests, or tokens), kept in a bounded LRU.
    Per replica: with N replicas a client gets up to N times the allowance, which is the
    trade for not paying a database round trip per request (budgets, which are money, are
    enforced globally)."""

    def __init__(self, per_minute: int, unit: str = "requests", max_clients: int = 10_000) -> None:
        self._limit, self._unit, self._max = per_minute, unit, max_clients
        self._windows: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def take(self, client: str, amount: int = 1) -> None:
        if self._limit <= 0:
            return
        now = time.monotonic()
        window = int(now // 60)
        start, used = self._windows.get(client, (window, 0))
        if start != window:
            start, used = window, 0
        if used + amount > self._limit:
            retry = 60 - (now % 60)
            raise RateLimited("rate_limited", retry_after=retry, limit=self._limit, unit=self._unit,
                              seconds=int(retry) + 1)
        self._windows[client] = (start, used + amount)
        self._windows.move_to_end(client)
        while len(self._windows) > self._max:
            self._windows.popitem(last=False)


class StreamSlots:
    """At most ``limit`` open streams per client on this replica."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> None:
        if self._open.get(client, 0) >= self._limit:
            raise RateLimited("too_many_streams", retry_after=1, max=self._limit)
        self._open[client] = self._open.get(client, 0) + 1

    def release(self, client: str) -> None:
        left = self._open.get(client, 1) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
