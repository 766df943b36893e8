"""Per-client request rate and concurrent-stream limits (per replica)."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from domain.errors import RateLimited


class MinuteQuota:
    """A one-minute allowance per client (requests, or tokens), kept in a bounded LRU.

    A sliding-window counter: what was used in the previous minute still counts, weighted by
    the share of that minute still inside the last 60 seconds. A fixed window would let a
    client spend its whole allowance at 0:59 and again at 1:00 (twice the allowance in two
    seconds); here any 60 seconds hold about one allowance (exact when use was even within
    the previous minute). Per replica: with N replicas a client gets up to N times the
    allowance, the trade for not paying a database round trip per request (budgets, which
    are money, are enforced globally)."""

    def __init__(self, per_minute: int, unit: str = "requests", max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit, self._unit, self._max, self._clock = per_minute, unit, max_clients, clock
        # client -> (minute number, used in that minute, used in the minute before it)
        self._windows: OrderedDict[str, tuple[int, int, int]] = OrderedDict()

    def take(self, client: str, amount: int = 1) -> None:
        if self._limit <= 0:
            return
        now = self._clock()
        minute, into = int(now // 60), (now % 60) / 60
        start, used, before = self._windows.get(client, (minute, 0, 0))
        if start != minute:
            start, used, before = minute, 0, (used if start == minute - 1 else 0)
        if used + before * (1 - into) + amount > self._limit:
            retry = self._retry_after(used, before, into, amount)
            raise RateLimited("rate_limited", retry_after=retry, limit=self._limit, unit=self._unit,
                              seconds=int(retry) + 1)
        self._windows[client] = (start, used + amount, before)
        self._windows.move_to_end(client)
        while len(self._windows) > self._max:
            self._windows.popitem(last=False)

    def _retry_after(self, used: int, before: int, into: float, amount: int) -> float:
        """Seconds until ``amount`` fits, if the client sends nothing meanwhile."""
        room = self._limit - amount
        if room < 0:
            return 60.0  # more than a whole minute's allowance never fits
        if used <= room and before:
            # later in this minute the previous minute's weight has decayed enough
            return max(0.0, (1 - (room - used) / before) - into) * 60
        # next minute this minute's use is the decaying one
        return (1 - into) * 60 + (max(0.0, 1 - room / used) * 60 if used else 0.0)


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
