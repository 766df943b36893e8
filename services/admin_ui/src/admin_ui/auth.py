"""The console's sign-in: one operator password, checked in constant time.

The password comes from ADMIN_PASSWORD, or DATA_DIR/admin_password when the variable is
unset. It is read when checked and never kept: the session holds a signed-in flag and the
failure count. Repeated failures wait exponentially longer before another try — per session,
and, because a fresh browser page is a fresh session, per client address and for the whole
console too (``SignInThrottle``, shared by every session of the process).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from domain.adapters.secret_files import configured_secret

# st.session_state is a MutableMapping[str | int, Any]; tests pass plain dicts.
Session = MutableMapping[Any, Any]

SIGNED_IN = "_signed_in"
FAILURES = "_signin_failures"
LOCKED_UNTIL = "_signin_locked_until"
FREE_TRIES = 3
MAX_LOCK_SECONDS = 300.0


def configured_password() -> str | None:
    return configured_secret("ADMIN_PASSWORD", "admin_password")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def password_matches(candidate: str, expected: str) -> bool:
    # Equal-length digests: the comparison time says nothing about the password's length.
    return hmac.compare_digest(_digest(candidate), _digest(expected))


def lock_seconds(failures: int) -> float:
    """No wait for the first few mistakes, then 2, 4, 8 … seconds, capped at five minutes."""
    if failures < FREE_TRIES:
        return 0.0
    return min(MAX_LOCK_SECONDS, 2.0 ** (failures - FREE_TRIES + 1))


@dataclass(slots=True)
class _AddressFailures:
    count: int
    last: float


class SignInThrottle:
    """Failed sign-ins counted across every console session (Streamlit serves all sessions
    from one process, so this state is shared by every browser page).

    - Per client address: ``free_tries`` failures pass, then each further try waits 2, 4,
      8 … seconds (capped at five minutes) after the last failure. A success from the
      address, or ``forget_after`` seconds without a failure, clears its count.
    - Whole console: a bucket of ``global_burst`` failed tries, refilled at
      ``global_per_minute``; while it is empty every sign-in waits for the next refill, so
      guessing from many addresses is bounded too (the price: during such an attack the
      operator waits as well).

    A refused try (while waiting) is not a guess: the password is not even checked.
    Bounded to ``max_addresses`` addresses (least recently failing dropped first).
    """

    def __init__(self, *, free_tries: int = 5, global_burst: int = 30, global_per_minute: float = 6.0,
                 forget_after: float = 900.0, max_addresses: int = 10_000) -> None:
        self._free, self._burst, self._rate = free_tries, float(global_burst), global_per_minute / 60.0
        self._forget, self._max = forget_after, max_addresses
        self._lock = threading.Lock()
        self._addresses: OrderedDict[str, _AddressFailures] = OrderedDict()
        self._tokens: float = float(global_burst)
        self._refilled: float | None = None

    def reset(self) -> None:
        with self._lock:
            self._addresses.clear()
            self._tokens, self._refilled = self._burst, None

    def _refill(self, now: float) -> None:
        if self._refilled is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now

    def wait(self, address: str, now: float) -> float:
        """Seconds before ``address`` may try again (0: now)."""
        with self._lock:
            self._refill(now)
            # (a hair of slack: a refill computed to exactly one token may round just below it)
            global_wait = 0.0 if self._tokens >= 1 - 1e-6 else (1 - self._tokens) / self._rate
            entry = self._addresses.get(address)
            if entry is None:
                return global_wait
            if now - entry.last >= self._forget:
                del self._addresses[address]
                return global_wait
            own_wait = entry.last + self._delay(entry.count) - now
            return max(global_wait, own_wait, 0.0)

    def _delay(self, failures: int) -> float:
        if failures < self._free:
            return 0.0
        return min(MAX_LOCK_SECONDS, 2.0 ** (failures - self._free + 1))

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            self._refill(now)
            self._tokens = max(0.0, self._tokens - 1)
            entry = self._addresses.get(address)
            if entry is None or now - entry.last >= self._forget:
                entry = self._addresses[address] = _AddressFailures(0, now)
            entry.count, entry.last = entry.count + 1, now
            self._addresses.move_to_end(address)
            while len(self._addresses) > self._max:
                self._addresses.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._addresses.pop(address, None)


THROTTLE = SignInThrottle()


def _trusted_proxy(peer: str | None) -> bool:
    """The peer may set X-Real-IP: the local nginx (loopback; Streamlit reports it as None)
    or an address in FORWARDED_ALLOW_IPS (comma list, ``*`` for any: compose's private
    network)."""
    if peer is None:
        return True
    allowed = [a.strip() for a in os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1").split(",") if a.strip()]
    if "*" in allowed:
        return True
    try:
        ip = ipaddress.ip_address(peer)
        return ip.is_loopback or any(ip in ipaddress.ip_network(a, strict=False) for a in allowed)
    except ValueError:
        return False


def client_address() -> str:
    """The signing-in browser's address: nginx's X-Real-IP (it overwrites any the client
    sent) when the connection comes from a trusted proxy, else the connection's peer."""
    try:
        import streamlit as st

        peer = st.context.ip_address
        forwarded = st.context.headers.get("X-Real-IP")
    except Exception:  # outside a Streamlit session (a script): one shared bucket
        return "unknown"
    # only strings count (Streamlit's test harness hands out stand-in objects)
    peer = peer if isinstance(peer, str) else None
    forwarded = forwarded if isinstance(forwarded, str) else None
    if forwarded and _trusted_proxy(peer):
        return forwarded.strip()[:64]
    return peer or "local"


def is_signed_in(session: Session) -> bool:
    return bool(session.get(SIGNED_IN))


def remaining_lock(session: Session, now: float | None = None) -> float:
    now = time.time() if now is None else now
    return max(0.0, float(session.get(LOCKED_UNTIL, 0.0)) - now)


def sign_in(session: Session, candidate: str, *, now: float | None = None,
            address: str | None = None, throttle: SignInThrottle = THROTTLE) -> str:
    """'ok', 'locked', 'wrong' or 'unconfigured'. Only 'ok' changes the signed-in flag.
    While the session, its address or the console as a whole must wait, the try is refused
    ('locked') without looking at the password; the session's lock then shows that wait."""
    now = time.time() if now is None else now
    address = client_address() if address is None else address
    shared_wait = throttle.wait(address, now)
    if remaining_lock(session, now) > 0 or shared_wait > 0:
        session[LOCKED_UNTIL] = max(float(session.get(LOCKED_UNTIL, 0.0)), now + shared_wait)
        return "locked"
    expected = configured_password()
    if not expected:
        return "unconfigured"
    if candidate and password_matches(candidate, expected):
        session[SIGNED_IN] = True
        session[FAILURES] = 0
        session[LOCKED_UNTIL] = 0.0
        throttle.succeeded(address)
        return "ok"
    failures = int(session.get(FAILURES, 0)) + 1
    session[FAILURES] = failures
    throttle.failed(address, now)
    session[LOCKED_UNTIL] = max(now + lock_seconds(failures), now + throttle.wait(address, now))
    return "wrong"


def sign_out(session: Session) -> None:
    session[SIGNED_IN] = False
