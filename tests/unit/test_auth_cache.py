"""The client-key cache: keyed by a digest of the token, never by the token; absurd tokens
are refused before they are looked up or kept."""
from __future__ import annotations

import sys

import pytest

from chat_api.auth_cache import MAX_BEARER_CHARS, CachedAuthenticator
from domain.adapters.fakes import FakeClock, InMemoryClientKeyRepository
from domain.errors import Unauthorized
from domain.use_cases.client_keys import AuthenticateClient, IssueClientKey

SECRET = b"h" * 40


class CountingKeys(InMemoryClientKeyRepository):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def by_hash(self, key_hash: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return await super().by_hash(key_hash)


async def test_a_megabyte_token_is_refused_without_a_lookup_and_never_kept():
    keys = CountingKeys()
    cache = CachedAuthenticator(AuthenticateClient(keys, SECRET, None))
    for i in range(200):
        with pytest.raises(Unauthorized) as err:
            await cache.execute("llms-" + chr(65 + i % 26) * 1_000_000)
        assert err.value.code == "invalid_client_key"
    assert keys.lookups == 0 and len(cache) == 0
    with pytest.raises(Unauthorized):
        await cache.execute("x" * (MAX_BEARER_CHARS + 1))
    assert keys.lookups == 0


async def test_entries_are_keyed_by_a_fixed_size_digest_not_the_token():
    keys = CountingKeys()
    issued = await IssueClientKey(keys, FakeClock(), SECRET).execute("k")
    cache = CachedAuthenticator(AuthenticateClient(keys, SECRET, None))
    wrong = "llms-" + "w" * (MAX_BEARER_CHARS - 5)
    for _ in range(3):
        assert (await cache.execute(issued.secret)).key_id == issued.key.id
        with pytest.raises(Unauthorized):
            await cache.execute(wrong)
    assert keys.lookups == 2  # one per distinct token: answers and refusals are cached
    cached = list(cache._cache)
    assert all(isinstance(k, bytes) and len(k) == 32 for k in cached)
    assert issued.secret.encode() not in b"".join(cached)
    assert sys.getsizeof(cached[1]) < 100


async def test_a_cached_refusal_does_not_grow_with_each_raise():
    cache = CachedAuthenticator(AuthenticateClient(CountingKeys(), SECRET, None))
    depths = []
    for _ in range(50):
        try:
            await cache.execute("llms-nope")
        except Unauthorized as err:
            tb, depth = err.__traceback__, 0
            while tb is not None:
                tb, depth = tb.tb_next, depth + 1
            depths.append(depth)
    assert depths[-1] == depths[1]


async def test_a_key_stops_at_its_expiry_even_while_cached():
    """Expiry is a moment, not "within the cache's lifetime": a cached identity is dropped
    when its key expires, and the key is then refused with 401 client_key_expired."""
    from datetime import timedelta

    from domain.client_keys import BudgetLimits
    from domain.errors import InvalidInput

    clock = FakeClock()
    keys = CountingKeys()
    issue = IssueClientKey(keys, clock, SECRET)
    with pytest.raises(InvalidInput) as err:
        await issue.execute("k", BudgetLimits(), expires_at=clock.now() - timedelta(seconds=1))
    assert err.value.code == "invalid_expiry"
    issued = await issue.execute("k", BudgetLimits(), expires_at=clock.now() + timedelta(hours=1))
    cache = CachedAuthenticator(AuthenticateClient(keys, SECRET, None, clock), ttl=3600, wall_clock=clock.now)
    assert (await cache.execute(issued.secret)).expires_at == issued.key.expires_at
    clock.advance(minutes=59, seconds=59)
    await cache.execute(issued.secret)
    assert keys.lookups == 1  # still the cached identity
    clock.advance(seconds=1)
    with pytest.raises(Unauthorized) as refused:
        await cache.execute(issued.secret)
    assert refused.value.code == "client_key_expired" and keys.lookups == 2
