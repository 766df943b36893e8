"""The sections of ``GET /api/v1/system/info`` (and ``/cpu``, ``/memory``, ``/disk``), read from
psutil. Byte figures are exact integers; ``*_gb`` figures are rounded for people."""
from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

import psutil

GIB = 1024**3


def _gb(n: float) -> float:
    return round(n / GIB, 2)


def system_section() -> dict[str, Any]:
    boot = psutil.boot_time()
    return {
        "platform": platform.system(),
        "platform_release": platform.release(),
        "platform_version": platform.version(),
        "architecture": platform.machine(),
        "hostname": socket.gethostname(),
        "processor": platform.processor(),
        "python_version": platform.python_version(),
        "boot_time": boot,
        "uptime_seconds": round(time.time() - boot, 1),
    }


def cpu_section(cpu_percent: float, per_core: list[float]) -> dict[str, Any]:
    freq = psutil.cpu_freq()
    load1, load5, load15 = psutil.getloadavg()
    return {
        "physical_cores": psutil.cpu_count(logical=False),
        "total_cores": psutil.cpu_count(logical=True),
        "max_frequency_mhz": freq.max if freq else None,
        "min_frequency_mhz": freq.min if freq else None,
        "current_frequency_mhz": freq.current if freq else None,
        "cpu_usage_per_core": per_core,
        "total_cpu_usage": cpu_percent,
        "load_average": [load1, load5, load15],
    }


def memory_section() -> dict[str, Any]:
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    return {
        "total_bytes": mem.total,
        "available_bytes": mem.available,
        "used_bytes": mem.used,
        "percentage": mem.percent,
        "total_gb": _gb(mem.total),
        "available_gb": _gb(mem.available),
        "used_gb": _gb(mem.used),
        "swap_total_bytes": swap.total,
        "swap_used_bytes": swap.used,
        "swap_percentage": swap.percent,
    }


def disk_section(path: str = "/") -> dict[str, Any]:
    usage = psutil.disk_usage(path)
    io = psutil.disk_io_counters()
    return {
        "path": path,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "percentage": usage.percent,
        "total_gb": _gb(usage.total),
        "used_gb": _gb(usage.used),
        "free_gb": _gb(usage.free),
        "read_bytes": io.read_bytes if io else None,
        "write_bytes": io.write_bytes if io else None,
    }


def network_section() -> dict[str, Any]:
    io = psutil.net_io_counters()
    return {
        "bytes_sent": io.bytes_sent,
        "bytes_recv": io.bytes_recv,
        "packets_sent": io.packets_sent,
        "packets_recv": io.packets_recv,
        "errin": io.errin,
        "errout": io.errout,
        "dropin": io.dropin,
        "dropout": io.dropout,
    }


def process_section() -> dict[str, Any]:
    """This (monitor) process."""
    proc = psutil.Process(os.getpid())
    with proc.oneshot():
        mem = proc.memory_info()
        cpu = proc.cpu_times()
        return {
            "pid": proc.pid,
            "name": proc.name(),
            "memory_rss_bytes": mem.rss,
            "memory_vms_bytes": mem.vms,
            "memory_percent": round(proc.memory_percent(), 2),
            "cpu_seconds": round(cpu.user + cpu.system, 2),
            "num_threads": proc.num_threads(),
            "create_time": proc.create_time(),
        }
