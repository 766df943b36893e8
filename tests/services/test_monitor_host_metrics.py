"""PsutilHostMetrics samples CPU in the background; requests read the latest value."""
from __future__ import annotations

import time
from collections import namedtuple

import pytest

from monitor.cpu_sampling import busy_percent
from monitor.psutil_host_metrics import PsutilHostMetrics

Times = namedtuple("Times", "user nice system idle iowait guest guest_nice")


def test_busy_percent_counts_iowait_as_idle_and_guest_once():
    before = Times(100, 0, 50, 800, 50, 0, 0)
    after = Times(130, 0, 60, 850, 60, 10, 0)  # guest 10 is already inside user
    # total: (1110 - 10 guest) - 1000 = 100; idle + iowait: 910 - 850 = 60; busy 40 of 100
    assert busy_percent(before, after) == pytest.approx(40.0)
    assert busy_percent(after, after) == 0.0


def test_sampler_serves_the_latest_reading_without_waiting():
    host = PsutilHostMetrics(interval=0.1)
    host.start()
    try:
        deadline = time.monotonic() + 5
        while host._cpu_percent is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host._cpu_percent is not None, "the sampler produced no reading"
        started = time.perf_counter()
        for _ in range(20):
            snap = host.snapshot()
        per_call = (time.perf_counter() - started) / 20
        assert per_call < 0.02  # psutil.cpu_percent(interval=0.1) would take 100 ms
        assert 0.0 <= snap.cpu_percent <= 100.0
        assert 0.0 < snap.memory_percent <= 100.0 and snap.memory_available_bytes > 0
    finally:
        host.stop()
    assert host._thread is None


def test_unstarted_adapter_answers_with_the_average_since_boot():
    snap = PsutilHostMetrics().snapshot()
    assert 0.0 <= snap.cpu_percent <= 100.0
