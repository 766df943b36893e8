"""A collector that reuses another collector's families for a few seconds."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class CachedCollector(Collector):
    """Collects ``inner`` at most once per ``seconds``: Prometheus replicas, a person with curl
    and a dashboard all scraping at once cost one round of database queries. Concurrent scrapes
    wait for the one collection in progress instead of starting their own."""

    def __init__(self, inner: Collector, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._at: float | None = None

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self.seconds:
                self._families = list(self.inner.collect())
                self._at = now
            return list(self._families)

    def describe(self) -> Iterable[Any]:
        return []  # names are only known at collection time; skip the registry's duplicate check
