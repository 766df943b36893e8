"""Host metrics (node-exporter style, prefixed ``host_``), read from psutil at scrape time."""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from domain.ports import HostMetrics

# Label sets stay bounded on hosts with hundreds of loop devices or veth interfaces.
MAX_LABEL_VALUES = 50
_PSEUDO_DISKS = ("loop", "ram", "zram", "fd", "sr")


class HostCollector(Collector):
    """CPU seconds per mode, load, memory and swap, filesystems, disk and network I/O, uptime.

    ``host_cpu_usage_ratio`` is the sampler's latest reading from the ``HostMetrics`` port, so
    it matches ``/api/v1/system/status``; the counters come straight from the kernel.
    """

    def __init__(self, host: HostMetrics | None = None) -> None:
        self.host = host

    def collect(self) -> Iterable[Metric]:
        yield from self._cpu()
        yield from self._memory()
        yield from self._filesystems()
        yield from self._disk_io()
        yield from self._network()
        boot = psutil.boot_time()
        yield GaugeMetricFamily("host_boot_time_seconds", "Host boot time, seconds since the Unix epoch.", value=boot)
        yield GaugeMetricFamily("host_uptime_seconds", "Seconds since the host booted.", value=time.time() - boot)

    def _cpu(self) -> Iterable[Metric]:
        seconds = CounterMetricFamily("host_cpu_seconds", "CPU time spent in each mode, summed over all CPUs.",
                                      labels=["mode"])
        for mode, value in psutil.cpu_times()._asdict().items():
            seconds.add_metric([mode], value)
        yield seconds
        yield GaugeMetricFamily("host_cpus", "Logical CPUs.", value=psutil.cpu_count() or 0)
        if self.host is not None:
            try:
                ratio = self.host.snapshot().cpu_percent / 100
            except Exception:  # the status route reports it; the counters above still hold
                ratio = None
            if ratio is not None:
                yield GaugeMetricFamily("host_cpu_usage_ratio", "Busy share of all CPUs over the last sample (0-1).",
                                        value=ratio)
        for minutes, value in zip((1, 5, 15), psutil.getloadavg(), strict=True):
            yield GaugeMetricFamily(f"host_load{minutes}", f"{minutes}-minute load average.", value=value)

    def _memory(self) -> Iterable[Metric]:
        mem, swap = psutil.virtual_memory(), psutil.swap_memory()
        for name, value, help_ in (
            ("host_memory_total_bytes", mem.total, "Physical memory."),
            ("host_memory_available_bytes", mem.available, "Memory available to new processes without swapping."),
            ("host_memory_used_bytes", mem.used, "Memory in use."),
            ("host_swap_total_bytes", swap.total, "Swap space."),
            ("host_swap_used_bytes", swap.used, "Swap space in use."),
        ):
            yield GaugeMetricFamily(name, help_, value=value)

    def _filesystems(self) -> Iterable[Metric]:
        labels = ["mountpoint", "fstype"]
        size = GaugeMetricFamily("host_filesystem_size_bytes", "Filesystem size.", labels=labels)
        used = GaugeMetricFamily("host_filesystem_used_bytes", "Filesystem space in use.", labels=labels)
        avail = GaugeMetricFamily("host_filesystem_avail_bytes", "Filesystem space available to non-root users.",
                                  labels=labels)
        for part in psutil.disk_partitions(all=False)[:MAX_LABEL_VALUES]:
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:  # unreadable or vanished mount
                continue
            values = [part.mountpoint, part.fstype]
            size.add_metric(values, usage.total)
            used.add_metric(values, usage.used)
            avail.add_metric(values, usage.free)
        yield from (size, used, avail)

    def _disk_io(self) -> Iterable[Metric]:
        counters: dict[str, Any] = psutil.disk_io_counters(perdisk=True) or {}
        devices = [d for d in sorted(counters) if not d.startswith(_PSEUDO_DISKS)][:MAX_LABEL_VALUES]
        families = {
            "read_bytes": CounterMetricFamily("host_disk_read_bytes", "Bytes read from the device.", labels=["device"]),
            "write_bytes": CounterMetricFamily("host_disk_written_bytes", "Bytes written to the device.",
                                               labels=["device"]),
            "read_count": CounterMetricFamily("host_disk_reads_completed", "Reads completed.", labels=["device"]),
            "write_count": CounterMetricFamily("host_disk_writes_completed", "Writes completed.", labels=["device"]),
        }
        for device in devices:
            for field, family in families.items():
                family.add_metric([device], getattr(counters[device], field))
        yield from families.values()

    def _network(self) -> Iterable[Metric]:
        counters: dict[str, Any] = psutil.net_io_counters(pernic=True) or {}
        received = CounterMetricFamily("host_network_receive_bytes", "Bytes received on the interface.",
                                       labels=["interface"])
        sent = CounterMetricFamily("host_network_transmit_bytes", "Bytes sent on the interface.", labels=["interface"])
        for name in sorted(counters)[:MAX_LABEL_VALUES]:
            received.add_metric([name], counters[name].bytes_recv)
            sent.add_metric([name], counters[name].bytes_sent)
        yield from (received, sent)
