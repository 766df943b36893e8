"""The Idempotency-Key header on non-streaming chat routes."""
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from domain.adapters.sql.idempotency import SqlIdempotencyStore
from domain.client_keys import ClientIdentity
from domain.errors import InvalidInput
from domain.ports import Clock


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise InvalidInput("invalid_idempotency_key", field="Idempotency-Key")
    return key


async def run_once(store: SqlIdempotencyStore, clock: Clock, client: ClientIdentity, key: str | None,
                   body: dict[str, Any], handler: Callable[[], Awaitable[Response]]) -> Response:
    """Runs ``handler`` at most once per (client, key, body): a retry gets the stored answer
    (with ``Idempotent-Replayed: true``) and the upstream is not called again.

    Not for anonymous callers: they cannot be told apart, so one's stored answer would be
    handed to another who sends the same key and body (DESIGN.md "Isolation and hostile
    input": nothing stored is replayed to an anonymous caller). Their key is ignored and
    each request runs."""
    owner = client.owner  # the key's rotation chain: a retry sent on the rotated key replays too
    if key is None or owner is None:
        return await handler()
    body_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    claimed_at = clock.now()
    stored = await store.begin(owner, key, body_hash, claimed_at)
    if stored is not None:
        return Response(stored.body, status_code=stored.status_code, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})
    try:
        response = await handler()
    except BaseException:
        await store.abandon(owner, key, claimed_at)
        raise
    if response.status_code == 200:
        await store.finish(owner, key, 200, bytes(response.body).decode(), claimed_at)
    else:
        await store.abandon(owner, key, claimed_at)
    return response
