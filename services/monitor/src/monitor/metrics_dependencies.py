"""Whether the services the monitor watches answer."""
from __future__ import annotations

from collections.abc import Iterable

import httpx
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class ChatApiReadinessCollector(Collector):
    """``llm_chat_api_ready``: 1 when ``GET <chat_api_url>/readyz`` answers 200 within the
    timeout. Behind a load balancer this probes one replica per scrape; Prometheus scrapes each
    replica's own ``/metrics`` for per-replica health."""

    def __init__(self, base_url: str, timeout: float = 0.5) -> None:
        self.url = base_url.rstrip("/") + "/readyz"
        self.timeout = timeout

    def collect(self) -> Iterable[Metric]:
        try:
            ready = httpx.get(self.url, timeout=self.timeout, trust_env=False).status_code == 200
        except httpx.HTTPError:
            ready = False
        yield GaugeMetricFamily("llm_chat_api_ready", "1 when chat_api's /readyz answers 200.", value=int(ready))
