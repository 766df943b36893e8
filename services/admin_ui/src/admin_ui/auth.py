"""The console's sign-in: one operator password, checked in constant time.

The password comes from ADMIN_PASSWORD, or DATA_DIR/admin_password when the variable is
unset. It is read when checked and never kept: the session holds a signed-in flag and the
failure count. Repeated failures wait exponentially longer (per session) before another try.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import MutableMapping
from typing import Any

from admin_ui.api import read_secret

# st.session_state is a MutableMapping[str | int, Any]; tests pass plain dicts.
Session = MutableMapping[Any, Any]

SIGNED_IN = "_signed_in"
FAILURES = "_signin_failures"
LOCKED_UNTIL = "_signin_locked_until"
FREE_TRIES = 3
MAX_LOCK_SECONDS = 300.0


def configured_password() -> str | None:
    return read_secret("ADMIN_PASSWORD", "admin_password")


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


def is_signed_in(session: Session) -> bool:
    return bool(session.get(SIGNED_IN))


def remaining_lock(session: Session, now: float | None = None) -> float:
    now = time.time() if now is None else now
    return max(0.0, float(session.get(LOCKED_UNTIL, 0.0)) - now)


def sign_in(session: Session, candidate: str, *, now: float | None = None) -> str:
    """'ok', 'locked', 'wrong' or 'unconfigured'. Only 'ok' changes the signed-in flag."""
    now = time.time() if now is None else now
    if remaining_lock(session, now) > 0:
        return "locked"
    expected = configured_password()
    if not expected:
        return "unconfigured"
    if candidate and password_matches(candidate, expected):
        session[SIGNED_IN] = True
        session[FAILURES] = 0
        session[LOCKED_UNTIL] = 0.0
        return "ok"
    failures = int(session.get(FAILURES, 0)) + 1
    session[FAILURES] = failures
    session[LOCKED_UNTIL] = now + lock_seconds(failures)
    return "wrong"


def sign_out(session: Session) -> None:
    session[SIGNED_IN] = False
