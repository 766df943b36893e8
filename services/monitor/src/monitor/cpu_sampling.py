"""CPU busy percentage from two ``psutil.cpu_times`` readings, the way ``psutil.cpu_percent``
computes it, but without psutil's process-wide "last call" state (which any other caller in
the process would disturb)."""
from __future__ import annotations

from typing import Any


def busy_percent(before: Any, after: Any) -> float:
    """Share of CPU time spent busy between two readings, 0-100. Idle includes iowait; guest
    time is already counted in user time on Linux, so it is not added twice."""
    total = _total(after) - _total(before)
    if total <= 0:
        return 0.0
    idle = _idle(after) - _idle(before)
    return round(min(100.0, max(0.0, 100.0 * (total - idle) / total)), 1)


def _total(times: Any) -> float:
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _idle(times: Any) -> float:
    if isinstance(times, list):  # the all-zero baseline
        return 0.0
    return float(times.idle) + getattr(times, "iowait", 0.0)
