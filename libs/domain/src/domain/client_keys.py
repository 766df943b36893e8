"""Client keys: how callers authenticate to the gateway.

A key is shown once when issued. Only its keyed hash (HMAC-SHA-256 with a server secret) is
stored, so a leaked database does not leak usable keys, and lookups compare hashes.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from domain.money import Money
from domain.pii import PiiPolicy

KEY_PREFIX = "llms-"
SHORT_ID_LEN = 8


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Caps in USD; None means uncapped."""

    daily: Money | None = None
    monthly: Money | None = None

    @classmethod
    def from_usd(cls, daily: Decimal | None, monthly: Decimal | None) -> BudgetLimits:
        """Caps given as USD amounts (settings, the admin API, llmctl); None stays uncapped."""
        return cls(None if daily is None else Money.from_usd(daily),
                   None if monthly is None else Money.from_usd(monthly))

    @property
    def applies(self) -> bool:
        return self.daily is not None or self.monthly is not None


@dataclass(slots=True)
class ClientKey:
    id: str
    short_id: str
    name: str
    key_hash: str
    created_at: datetime
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    may_use_server_key: bool = True
    revoked_at: datetime | None = None
    pii_policy: PiiPolicy | None = None  # None: the server's PII_POLICY
    expires_at: datetime | None = None  # None: never
    # Whose budget counters the key draws on: the first key of its rotation chain (a rotated
    # key carries on its predecessors' spend); None: its own.
    budget_key_id: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def budget_owner(self) -> str:
        """The key id naming this key's budget counters (``scope_of``)."""
        return self.budget_key_id or self.id

    def expired(self, now: datetime) -> bool:
        """From ``expires_at`` on, the key is refused (401 ``client_key_expired``)."""
        return expires(self.expires_at, now)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who is calling, as the use cases see it. ``key_id`` None is the anonymous caller."""

    key_id: str | None
    short_id: str
    limits: BudgetLimits
    may_use_server_key: bool = True
    pii_policy: PiiPolicy | None = None  # the key's own personal-data policy; None: the server's
    expires_at: datetime | None = None  # so a cached identity stops being valid at that moment
    budget_key_id: str | None = None  # ClientKey.budget_owner; None: its own key's (or anonymous)

    @property
    def budget_scope(self) -> str:
        """The counters this caller's requests are held and charged on: its key's budget,
        shared by every key of a rotation chain."""
        return scope_of(self.budget_key_id or self.key_id)

    @property
    def owner(self) -> str | None:
        """Whose stored objects this caller reaches (conversations, stored responses,
        Idempotency-Keys): its key's rotation chain, named by the chain's first key id. A
        rotated key carries on what its predecessors made; a key merely issued under the same
        name starts a chain of its own. A chain's first key's own id is the chain id, so what
        it stored before it was ever rotated stays its chain's. None: anonymous (no one)."""
        return None if self.key_id is None else self.budget_key_id or self.key_id


def expires(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a key with this expiry is expired at ``now`` (a naive time is UTC, as SQLite
    returns it)."""
    if expires_at is None:
        return False
    at = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at
    current = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    return current >= at


KEY_SCOPE_PREFIX = "key:"  # a client key's budget counters: scope "key:<id>"


def scope_of(client_key_id: str | None) -> str:
    """The budget scope of a client: its key, or the shared anonymous scope."""
    return f"{KEY_SCOPE_PREFIX}{client_key_id}" if client_key_id else "anonymous"


def generate_client_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_client_key(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def short_id_of(key: str) -> str:
    """The part of a key that is safe to show: its first characters after the prefix."""
    return key[len(KEY_PREFIX):][:SHORT_ID_LEN]
