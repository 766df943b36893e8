"""Client-key authentication without a database round trip on the hot path."""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from domain.client_keys import ClientIdentity, expires
from domain.errors import DomainError
from domain.use_cases.client_keys import AuthenticateClient, unauthorized

# Issued keys are "llms-" + 43 characters; 256 leaves room for other formats while a
# megabyte "key" is refused before it is hashed against the database, cached or kept.
MAX_BEARER_CHARS = 256


class CachedAuthenticator:
    """Caches answers (including refusals) for ``ttl`` seconds in a bounded LRU, so a revoked
    key stops working within ``ttl`` on every replica, and a flood of bad keys cannot grow
    memory: entries are keyed by a SHA-256 digest of the token (32 bytes, whatever its
    length), and a token longer than ``MAX_BEARER_CHARS`` is refused outright, uncached.
    ``invalidate`` makes a revocation immediate on this replica. A cached identity stops at
    its key's expiry to the second, whatever the ``ttl`` (``wall_clock`` says when it is)."""

    def __init__(self, inner: AuthenticateClient, *, ttl: float = 5.0, max_entries: int = 10_000,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._inner, self._ttl, self._max, self._wall = inner, ttl, max_entries, wall_clock
        self._cache: OrderedDict[bytes, tuple[float, ClientIdentity | DomainError]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    async def execute(self, bearer: str | None) -> ClientIdentity:
        if bearer is not None and len(bearer) > MAX_BEARER_CHARS:
            raise unauthorized()
        token = hashlib.sha256((bearer or "").encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(token)
        now = time.monotonic()
        if (hit is not None and isinstance(hit[1], ClientIdentity) and hit[1].expires_at is not None
                and expires(hit[1].expires_at, self._wall())):
            hit = None  # a key that expired since it was cached: asked again, and refused
        if hit is None or hit[0] < now:
            try:
                answer: ClientIdentity | DomainError = await self._inner.execute(bearer)
            except DomainError as exc:
                answer = exc.with_traceback(None)  # a kept traceback would pin its frames
            self._cache[token] = (now + self._ttl, answer)
            self._cache.move_to_end(token)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            answer = hit[1]
        if isinstance(answer, DomainError):
            # a fresh traceback each time: re-raising the cached object would grow its chain
            raise answer.with_traceback(None)
        return answer

    def invalidate(self) -> None:
        self._cache.clear()
