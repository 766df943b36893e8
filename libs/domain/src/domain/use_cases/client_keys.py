"""Issuing, authenticating, rotating and revoking client keys."""
from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.client_keys import (
    BudgetLimits,
    ClientIdentity,
    ClientKey,
    expires,
    generate_client_key,
    hash_client_key,
    short_id_of,
)
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from domain.pii import PiiPolicy
from domain.ports import ClientKeyRepository, Clock


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ClientKey
    secret: str  # shown to the operator once, never stored


class IssueClientKey:
    """A new key: random, stored only as its keyed hash, returned in clear exactly once. An
    expiry, when given, must be in the future (``invalid_expiry``)."""

    def __init__(self, keys: ClientKeyRepository, clock: Clock, hash_secret: bytes) -> None:
        self._keys, self._clock, self._secret = keys, clock, hash_secret

    async def execute(self, name: str, limits: BudgetLimits = BudgetLimits(), may_use_server_key: bool = True,
                      pii_policy: PiiPolicy | None = None, expires_at: datetime | None = None,
                      *, budget_key_id: str | None = None) -> IssuedKey:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("invalid_key_name", field="name")
        now = self._clock.now()
        if expires(expires_at, now):
            raise InvalidInput("invalid_expiry", field="expires_at")
        secret = generate_client_key()
        key = ClientKey(id=uuid.uuid4().hex, short_id=short_id_of(secret), name=name,
                        key_hash=hash_client_key(self._secret, secret), created_at=now,
                        limits=limits, may_use_server_key=may_use_server_key, pii_policy=pii_policy,
                        expires_at=expires_at, budget_key_id=budget_key_id)
        await self._keys.add(key)
        return IssuedKey(key, secret)


def unauthorized() -> Unauthorized:
    return Unauthorized("invalid_client_key")


class AuthenticateClient:
    """A bearer client key → the caller's identity. Unknown keys are refused (401), revoked
    keys too (403), and a key past its expiry (401 ``client_key_expired``: the client must
    ask for a new key, as with a wrong one); with no key, the anonymous identity only if the
    operator enabled it."""

    def __init__(self, keys: ClientKeyRepository, hash_secret: bytes, anonymous: ClientIdentity | None,
                 clock: Clock | None = None) -> None:
        self._keys, self._secret, self._anonymous, self._clock = keys, hash_secret, anonymous, clock

    async def execute(self, bearer: str | None) -> ClientIdentity:
        if not bearer:
            if self._anonymous is None:
                raise unauthorized()
            return self._anonymous
        key_hash = hash_client_key(self._secret, bearer)
        key = await self._keys.by_hash(key_hash)
        # The lookup is by hash, so timing reveals nothing about stored keys; the final
        # compare is constant-time anyway in case a repository matches loosely.
        if key is None or not hmac.compare_digest(key.key_hash, key_hash):
            raise unauthorized()
        if key.revoked:
            raise Forbidden("client_key_revoked")
        if key.expires_at is not None and key.expired(self._clock.now() if self._clock else datetime.now(UTC)):
            raise Unauthorized("client_key_expired")
        return ClientIdentity(key.id, key.short_id, key.limits, key.may_use_server_key, key.pii_policy,
                              key.expires_at, key.budget_owner)


class RevokeClientKey:
    def __init__(self, keys: ClientKeyRepository, clock: Clock) -> None:
        self._keys, self._clock = keys, clock

    async def execute(self, key_id: str) -> None:
        if not await self._keys.revoke(key_id, self._clock.now()):
            raise NotFound("client_key_not_found")


@dataclass(frozen=True, slots=True)
class RotatedKey:
    previous: ClientKey  # now revoked
    issued: IssuedKey


class RotateClientKey:
    """Replaces a key by a new one that carries on where it stopped: a new key is issued with
    the same name, budget caps, server-key permission and personal-data policy (its secret
    shown once), then the old key is revoked. Issued first, so a failure never leaves the
    client without a working key (at worst both work until the revocation is retried).

    A key with an expiry gets the same lifetime from now (a 90-day key rotated on day 80 is
    good for another 90 days). A revoked key cannot be rotated (``client_key_revoked``): it
    was stopped on purpose.

    Rotation never resets a budget: the new key draws on the same budget counters as the old
    one (``ClientKey.budget_key_id``, the chain's first key), so its daily and monthly caps
    count what its predecessors spent and hold in the same periods — a request still in
    flight on the old key settles there too. Ledger rows keep the key that made them."""

    def __init__(self, keys: ClientKeyRepository, clock: Clock, hash_secret: bytes) -> None:
        self._keys, self._clock = keys, clock
        self._issue = IssueClientKey(keys, clock, hash_secret)

    async def execute(self, key_id: str) -> RotatedKey:
        old = await self._keys.get(key_id)
        if old is None:
            raise NotFound("client_key_not_found")
        if old.revoked:
            raise Conflict("client_key_revoked")
        lifetime = None if old.expires_at is None else old.expires_at - old.created_at
        expires_at = None if lifetime is None else self._clock.now() + lifetime
        issued = await self._issue.execute(old.name, old.limits, old.may_use_server_key, old.pii_policy, expires_at,
                                           budget_key_id=old.budget_owner)
        await self._keys.revoke(old.id, self._clock.now())
        return RotatedKey(old, issued)


class SetClientKeyExpiry:
    """When a key stops working (``None``: never). A moment already past is refused
    (``invalid_expiry``): to stop a key now, revoke it. Takes effect within the
    authentication cache's lifetime on other replicas, at once on the one that set it."""

    def __init__(self, keys: ClientKeyRepository, clock: Clock) -> None:
        self._keys, self._clock = keys, clock

    async def execute(self, key_id: str, expires_at: datetime | None) -> None:
        if expires(expires_at, self._clock.now()):
            raise InvalidInput("invalid_expiry", field="expires_at")
        if not await self._keys.set_expiry(key_id, expires_at):
            raise NotFound("client_key_not_found")


class SetClientBudget:
    def __init__(self, keys: ClientKeyRepository) -> None:
        self._keys = keys

    async def execute(self, key_id: str, limits: BudgetLimits) -> None:
        for cap in (limits.daily, limits.monthly):
            if cap is not None and cap.nanos < 0:
                raise InvalidInput("invalid_budget", field="budget")
        if not await self._keys.set_limits(key_id, limits):
            raise NotFound("client_key_not_found")


class SetClientPiiPolicy:
    """A key's own personal-data policy (``None``: the server's ``PII_POLICY`` again). Takes
    effect within the authentication cache's lifetime on every replica."""

    def __init__(self, keys: ClientKeyRepository) -> None:
        self._keys = keys

    async def execute(self, key_id: str, policy: PiiPolicy | None) -> None:
        if not await self._keys.set_pii_policy(key_id, policy):
            raise NotFound("client_key_not_found")
