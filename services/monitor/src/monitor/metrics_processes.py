"""Process metrics of the stack's services, found by their pid files."""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MAX_SERVICES = 20
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class StackProcessCollector(Collector):
    """For every ``<service>.pid`` in ``pid_dir``: whether the process is up, its resident
    memory, CPU seconds and open file descriptors, labelled ``service``. Children are not
    summed (uvicorn runs one worker per service). A stale pid file reports ``up`` 0."""

    def __init__(self, pid_dir: Path) -> None:
        self.pid_dir = Path(pid_dir)

    def _services(self) -> list[tuple[str, int | None]]:
        try:
            files = sorted(self.pid_dir.glob("*.pid"))
        except OSError:
            return []
        found: list[tuple[str, int | None]] = []
        for path in files:
            if not _SERVICE_NAME.match(path.stem):
                continue
            try:
                pid: int | None = int(path.read_text().strip())
            except (OSError, ValueError):
                pid = None
            found.append((path.stem, pid))
            if len(found) >= MAX_SERVICES:
                break
        return found

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("llm_process_up", "1 when the service's pid file names a running process.",
                               labels=["service"])
        rss = GaugeMetricFamily("llm_process_resident_memory_bytes", "Resident memory of the service's process.",
                                labels=["service"])
        cpu = CounterMetricFamily("llm_process_cpu_seconds", "User and system CPU time of the service's process.",
                                  labels=["service"])
        fds = GaugeMetricFamily("llm_process_open_fds", "Open file descriptors of the service's process.",
                                labels=["service"])
        for service, pid in self._services():
            try:
                if pid is None:
                    raise psutil.NoSuchProcess(-1)
                proc = psutil.Process(pid)
                with proc.oneshot():
                    memory, times = proc.memory_info(), proc.cpu_times()
                    open_fds = proc.num_fds() if hasattr(proc, "num_fds") else None
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                up.add_metric([service], 0)
                continue
            except psutil.AccessDenied:
                up.add_metric([service], 1)
                continue
            up.add_metric([service], 1)
            rss.add_metric([service], memory.rss)
            cpu.add_metric([service], times.user + times.system)
            if open_fds is not None:
                fds.add_metric([service], open_fds)
        yield from (up, rss, cpu, fds)
