"""``PsutilHostMetrics``: the ``HostMetrics`` port over psutil."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psutil

from domain.ports import HostSnapshot
from monitor import host_info
from monitor.cpu_sampling import busy_percent

log = logging.getLogger(__name__)


class StaleSample(RuntimeError):
    """The CPU sampler has not produced a reading for too long (it died or is starved)."""


class PsutilHostMetrics:
    """The host as psutil sees it.

    CPU usage needs two readings some time apart, so a daemon thread takes one every
    ``interval`` seconds and keeps the latest percentage; requests read that value and never
    wait. Before the first tick (or when the sampler was never started, as in tests) the
    figure is the average since boot. A reading older than ``max_age`` seconds means the
    sampler is dead: ``snapshot`` then raises ``StaleSample`` rather than serve a stale figure
    as current. Memory and disk figures are read on demand (they are cheap, non-blocking reads).
    """

    def __init__(self, interval: float = 1.0, *, disk_path: str = "/", max_age: float | None = None) -> None:
        self.interval = interval
        self.disk_path = disk_path
        self.max_age = max_age if max_age is not None else max(5.0, 5 * interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_percent: float | None = None
        self._per_core: list[float] | None = None
        self._sampled_at = 0.0  # monotonic time of the latest reading (or of start())

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._sampled_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=self.interval + 2)

    def _run(self) -> None:
        before, before_cores = psutil.cpu_times(), psutil.cpu_times(percpu=True)
        while not self._stop.wait(self.interval):
            try:
                after, after_cores = psutil.cpu_times(), psutil.cpu_times(percpu=True)
            except Exception:  # keep sampling; a stale reading surfaces through snapshot()
                log.exception("CPU sample failed")
                continue
            per_core = [busy_percent(b, a) for b, a in zip(before_cores, after_cores, strict=False)]
            with self._lock:
                self._cpu_percent = busy_percent(before, after)
                self._per_core = per_core
                self._sampled_at = time.monotonic()
            before, before_cores = after, after_cores

    # -- readings -------------------------------------------------------------------------
    def cpu_percent(self) -> tuple[float, list[float]]:
        """The latest total and per-core busy percentages."""
        with self._lock:
            total, per_core, at = self._cpu_percent, self._per_core, self._sampled_at
        if self._thread is not None and time.monotonic() - at > self.max_age:
            raise StaleSample(f"the CPU sampler has produced no reading for {time.monotonic() - at:.0f}s")
        if total is None or per_core is None:
            return self._since_boot()
        return total, per_core

    @staticmethod
    def _since_boot() -> tuple[float, list[float]]:
        now, cores = psutil.cpu_times(), psutil.cpu_times(percpu=True)
        zero = [0.0] * len(now)  # "since boot" is a delta from all-zero times
        return busy_percent(zero, now), [busy_percent(zero, c) for c in cores]

    def snapshot(self) -> HostSnapshot:
        cpu, _ = self.cpu_percent()
        memory = psutil.virtual_memory()
        return HostSnapshot(cpu_percent=cpu, memory_percent=float(memory.percent),
                            memory_available_bytes=int(memory.available))

    def info(self) -> dict[str, Any]:
        """Every section of ``/api/v1/system/info``: system, cpu, memory, disk, network, process."""
        cpu, per_core = self.cpu_percent()
        return {
            "system": host_info.system_section(),
            "cpu": host_info.cpu_section(cpu, per_core),
            "memory": host_info.memory_section(),
            "disk": host_info.disk_section(self.disk_path),
            "network": host_info.network_section(),
            "process": host_info.process_section(),
        }
