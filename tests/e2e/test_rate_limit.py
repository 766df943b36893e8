"""The router's per-address rate limit. The burst is sent through a router of its own (same
template, same services, its own limit zone), so draining it affects no other test and the
test may run in any order."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.processes import stop

pytestmark = pytest.mark.e2e


def test_a_burst_beyond_the_rate_limit_gets_429(stack):
    proc, base_url = stack.start_router("nginx-rate-limit", rate="1r/s", burst=20)
    try:
        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                answers = await asyncio.gather(*(client.get(f"{base_url}/api/v1/") for _ in range(100)),
                                               return_exceptions=True)
            return [a.status_code for a in answers if isinstance(a, httpx.Response)]

        statuses = asyncio.run(burst())
        assert 429 in statuses, sorted(set(statuses))
        assert 200 in statuses
        assert set(statuses) <= {200, 429}
        assert httpx.get(f"{stack.base_url}/api/v1/").status_code == 200, "the shared router is untouched"
    finally:
        stop(proc)
