"""The router's per-address rate limit (runs last in this directory: it drains the bucket)."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_a_burst_beyond_the_rate_limit_gets_429(stack):
    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            answers = await asyncio.gather(*(client.get(f"{stack.base_url}/api/v1/") for _ in range(300)),
                                           return_exceptions=True)
        return [a.status_code for a in answers if isinstance(a, httpx.Response)]

    statuses = asyncio.run(burst())
    assert 429 in statuses, sorted(set(statuses))
    assert 200 in statuses
    assert set(statuses) <= {200, 429}
    time.sleep(3)  # let the bucket refill for whoever runs next
    assert httpx.get(f"{stack.base_url}/api/v1/").status_code == 200
