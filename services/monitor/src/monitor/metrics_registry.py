"""The monitor's own Prometheus registry (never the process-global default one, so two apps in
one test process never share or double-register collectors)."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from sqlalchemy import Engine

from domain.ports import HostMetrics
from monitor.cached_collector import CachedCollector
from monitor.metrics_business import BusinessCollector
from monitor.metrics_dependencies import ChatApiReadinessCollector
from monitor.metrics_host import HostCollector
from monitor.metrics_processes import StackProcessCollector
from monitor.settings import MonitorSettings


def build_registry(settings: MonitorSettings, engine: Engine, host: HostMetrics | None,
                   clock: Callable[[], float] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    seconds = settings.metrics_cache_seconds
    tick = clock or time.monotonic
    registry.register(HostCollector(host))
    registry.register(StackProcessCollector(Path(settings.stack_pid_dir)))
    ProcessCollector(registry=registry)  # the monitor's own process_* metrics
    registry.register(CachedCollector(BusinessCollector(engine, settings.usd_krw_rate), seconds, tick))
    registry.register(CachedCollector(ChatApiReadinessCollector(settings.chat_api_url,
                                                                settings.chat_api_timeout_seconds), seconds, tick))
    return registry
