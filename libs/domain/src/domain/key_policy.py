"""Whose OpenAI key pays for a request."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import Forbidden, InvalidInput, UpstreamError, no_api_key


class KeySource(StrEnum):
    USER = "user"
    SERVER = "server"


class FallbackReason(StrEnum):
    USER_KEY_MISSING = "user_key_missing"
    USER_KEY_REJECTED = "user_key_rejected"
    USER_KEY_QUOTA = "user_key_quota_exceeded"


@dataclass(frozen=True, slots=True)
class KeyChoice:
    source: KeySource
    api_key: str
    fallback_reason: FallbackReason | None = None

    def __repr__(self) -> str:  # the key itself must never reach a log line
        return f"KeyChoice(source={self.source.value}, fallback_reason={self.fallback_reason})"


class DefaultKeyPolicy:
    """The rules (DESIGN.md "Key policy"):

    1. The caller asks for its own key and gives one → the caller's key; the server's budget
       is not charged.
    2. Otherwise the server key, if one is configured and the client may use it. When the
       caller asked for its own key but sent none, the answer says so (``user_key_missing``).
    3. Otherwise: a configuration error (no key available), or Forbidden when a server key
       exists but this client may not use it.

    After the upstream rejects the caller's key (401/403/insufficient_quota), ``fallback``
    switches to the server key under rule 2, or re-raises the upstream's error.
    """

    def __init__(self, server_key: str | None) -> None:
        self._server_key = server_key or None

    def choose(self, *, use_user_key: bool, user_key: str | None, may_use_server_key: bool) -> KeyChoice:
        if use_user_key and user_key:
            return KeyChoice(KeySource.USER, user_key)
        reason = FallbackReason.USER_KEY_MISSING if use_user_key else None
        return KeyChoice(KeySource.SERVER, self._server_key_for(may_use_server_key), reason)

    def fallback(self, error: UpstreamError, *, may_use_server_key: bool) -> KeyChoice:
        if not error.rejects_key or not self._server_key or not may_use_server_key:
            raise error
        reason = (FallbackReason.USER_KEY_QUOTA if error.upstream_code == "insufficient_quota"
                  else FallbackReason.USER_KEY_REJECTED)
        return KeyChoice(KeySource.SERVER, self._server_key, reason)

    def _server_key_for(self, may_use_server_key: bool) -> str:
        if not self._server_key:
            raise no_api_key()
        if not may_use_server_key:
            raise Forbidden("server_key_not_allowed")
        return self._server_key


MAX_USER_KEY_CHARS = 512


def header_safe(value: str) -> bool:
    """Whether a key can travel in an HTTP header as it is: visible ASCII, no spaces."""
    return value.isascii() and value.isprintable() and " " not in value


def user_api_key(value: str | None, field: str) -> str | None:
    """A caller's own OpenAI key as given (None when absent or blank). It travels upstream in
    an HTTP header, so it must be visible ASCII without spaces; anything else is refused here
    rather than failing at the upstream call (the message never repeats the value)."""
    if not value:
        return None
    if len(value) > MAX_USER_KEY_CHARS or not header_safe(value):
        raise InvalidInput("invalid_user_api_key", field=field, max=MAX_USER_KEY_CHARS)
    return value
