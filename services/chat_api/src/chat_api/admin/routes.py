"""``/admin/v1`` routes (docs/admin-api.md). Every route requires the admin token.

Reads run the synchronous read models of ``domain.adapters.sql.queries`` in the container's
database thread pool; writes go through the key use cases. Money leaves as decimal strings:
USD to 8 places, KRW at the configured rate to 2.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chat_api.bootstrap import Container
from chat_api.deps import ContainerDep, require_admin
from domain.adapters.sql import queries
from domain.client_keys import BudgetLimits
from domain.errors import InvalidInput, NotFound
from domain.money import Money
from domain.pii import PiiPolicy

T = TypeVar("T")

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(require_admin)])

KeySourceParam = Literal["user", "server"]
UsdAmount = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=9)]


# -- request bodies -------------------------------------------------------------------------------

class CreateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    daily_limit_usd: UsdAmount | None = None
    monthly_limit_usd: UsdAmount | None = None
    may_use_server_key: bool = True
    pii_policy: PiiPolicy | None = None  # None: the server's PII_POLICY


class PiiPolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pii_policy: PiiPolicy | None  # null: back to the server's PII_POLICY


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_limit_usd: UsdAmount | None
    monthly_limit_usd: UsdAmount | None


# -- formatting -----------------------------------------------------------------------------------

def _usd(nanos: int | None) -> str | None:
    return None if nanos is None else queries.usd_8(nanos)


def _krw(nanos: int | None, rate: Decimal) -> str | None:
    return None if nanos is None else format(Money(nanos).krw(rate), "f")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(nanos: int | None, rate: Decimal) -> dict[str, str | None]:
    return {"cost_usd": _usd(nanos), "cost_krw": _krw(nanos, rate)}


def _totals(t: queries.Totals, rate: Decimal) -> dict[str, Any]:
    return {"requests": t.requests, "errors": t.errors, "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens, **_money(t.cost_nanos, rate)}


def _conversation(c: queries.ConversationItem, rate: Decimal) -> dict[str, Any]:
    return {"id": c.id, "external_id": c.external_id, "owner": c.owner, "owner_short_id": c.owner_short_id,
            "owner_name": c.owner_name, "turn_count": c.turn_count, "created_at": _iso(c.created_at),
            "updated_at": _iso(c.updated_at), "last_model": c.last_model, **_money(c.cost_nanos, rate)}


def _turn(t: queries.TurnView, rate: Decimal) -> dict[str, Any]:
    return {"turn_index": t.turn_index, "created_at": _iso(t.created_at), "request_id": t.request_id,
            "system_prompt": t.system_prompt, "prompt": t.prompt, "reply": t.reply, "model": t.model,
            "input_tokens": t.input_tokens, "cached_input_tokens": t.cached_input_tokens,
            "output_tokens": t.output_tokens, "reasoning_tokens": t.reasoning_tokens,
            **_money(t.cost_nanos, rate), "latency_ms": t.latency_ms, "key_source": t.key_source,
            "estimated": t.estimated, "outcome": t.outcome, "fallback_reason": t.fallback_reason}


def _key(k: queries.KeyView) -> dict[str, Any]:
    return {"id": k.id, "short_id": k.short_id, "name": k.name, "created_at": _iso(k.created_at),
            "revoked_at": _iso(k.revoked_at), "daily_limit_usd": _usd(k.daily_limit_nanos),
            "monthly_limit_usd": _usd(k.monthly_limit_nanos), "may_use_server_key": k.may_use_server_key,
            "pii_policy": k.pii_policy,
            "spent_today_usd": _usd(k.spent_today_nanos), "spent_month_usd": _usd(k.spent_month_nanos)}


def _limit(value: Decimal | None) -> Money | None:
    return None if value is None else Money.from_usd(value)


def _range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and queries.utc(since) >= queries.utc(until):
        raise InvalidInput("invalid_time_range", field="since")


def _key_not_found() -> NotFound:
    return NotFound("client_key_not_found")


async def _db(container: Container, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(container.executor, lambda: fn(*args, **kwargs))


def _now(container: Container) -> datetime:
    return container.clock.now()


# -- reads ----------------------------------------------------------------------------------------

Since = Annotated[datetime | None, Query(description="inclusive, ISO 8601 (UTC if no offset)")]
Until = Annotated[datetime | None, Query(description="exclusive, ISO 8601 (UTC if no offset)")]
ClientKeyId = Annotated[str | None, Query(max_length=32)]
ModelName = Annotated[str | None, Query(max_length=100)]


@router.get("/overview")
async def get_overview(container: ContainerDep) -> dict[str, Any]:
    rate = container.settings.usd_krw_rate
    ov = await _db(container, queries.overview, container.engine, _now(container))
    return {
        "usd_krw_rate": str(rate),
        "today": _totals(ov.today, rate),
        "month": _totals(ov.month, rate),
        "top_models": [{"model": r.key, "requests": r.totals.requests, **_money(r.totals.cost_nanos, rate)}
                       for r in ov.top_models],
        "top_clients": [{"client_key_id": r.client_key_id, "short_id": r.short_id, "name": r.name,
                         "requests": r.totals.requests, **_money(r.totals.cost_nanos, rate)} for r in ov.top_clients],
        "by_day": [{"day": r.key, "requests": r.totals.requests, **_money(r.totals.cost_nanos, rate)}
                   for r in ov.by_day],
    }


@router.get("/conversations")
async def list_conversations(
    container: ContainerDep, since: Since = None, until: Until = None, client_key_id: ClientKeyId = None,
    model: ModelName = None, key_source: KeySourceParam | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1, page_size: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    _range(since, until)
    text = (q or "").strip() or None
    flt = queries.ConversationFilter(since, until, client_key_id or None, model or None, key_source, text)
    result = await _db(container, queries.conversations, container.engine, flt, page=page, page_size=page_size)
    rate = container.settings.usd_krw_rate
    return {"items": [_conversation(c, rate) for c in result.items], "total": result.total,
            "page": result.page, "page_size": result.page_size}


@router.get("/conversations/{conversation_id}/turns")
async def conversation_turns(container: ContainerDep, conversation_id: int) -> dict[str, Any]:
    detail = await _db(container, queries.conversation_turns, container.engine, conversation_id)
    if detail is None:
        raise NotFound("conversation_not_found")
    rate = container.settings.usd_krw_rate
    return {"conversation": _conversation(detail.conversation, rate), "turns": [_turn(t, rate) for t in detail.turns]}


@router.get("/spend")
async def get_spend(
    container: ContainerDep, group_by: Literal["day", "model", "key_source", "client_key"] = "day",
    since: Since = None, until: Until = None, client_key_id: ClientKeyId = None, model: ModelName = None,
    key_source: KeySourceParam | None = None,
) -> dict[str, Any]:
    _range(since, until)
    flt = queries.LedgerFilter(since, until, client_key_id or None, model or None, key_source)
    rows, total = await _db(container, queries.spend, container.engine, group_by, flt)
    rate = container.settings.usd_krw_rate
    return {"group_by": group_by,
            "rows": [{"key": r.key, "label": r.label, **_totals(r.totals, rate)} for r in rows],
            "total": _totals(total, rate)}


@router.get("/pii")
async def get_pii(container: ContainerDep, since: Since = None, until: Until = None,
                  client_key_id: ClientKeyId = None) -> dict[str, Any]:
    """Personal data the guard found, per kind: in total and per client key (counts from the
    ledger rows, never values). Without ``since``, the current month."""
    _range(since, until)
    since = since if since is not None or until is not None else queries.month_start(_now(container))
    flt = queries.LedgerFilter(since, until, client_key_id or None)
    found = await _db(container, queries.pii_counts, container.engine, flt)
    return {"since": _iso(since), "until": _iso(until), "total": found.total,
            "by_key": [{"client_key_id": k.client_key_id, "short_id": k.short_id, "name": k.name, "counts": k.counts}
                       for k in found.by_key]}


@router.get("/spend/ledger.csv")
async def ledger_csv(
    container: ContainerDep, since: Since = None, until: Until = None, client_key_id: ClientKeyId = None,
    model: ModelName = None, key_source: KeySourceParam | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
) -> StreamingResponse:
    _range(since, until)
    flt = queries.LedgerFilter(since, until, client_key_id or None, model or None, key_source)
    chunks = queries.ledger_csv(container.engine, flt, limit=limit)
    loop = asyncio.get_running_loop()

    async def body() -> AsyncIterator[bytes]:
        # Each chunk is one short query: pull it in the database pool, never on the loop.
        while True:
            chunk = await loop.run_in_executor(container.executor, next, chunks, None)
            if chunk is None:
                return
            yield chunk.encode("utf-8")

    stamp = _now(container).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="ledger-{stamp}.csv"'})


@router.get("/keys")
async def list_keys(container: ContainerDep) -> dict[str, Any]:
    items = await _db(container, queries.keys, container.engine, _now(container))
    return {"items": [_key(k) for k in items]}


@router.get("/prices")
async def get_prices(container: ContainerDep) -> dict[str, Any]:
    table = container.prices
    return {"version": table.version, "models": [
        {"model": name, "input": str(p.input), "cached_input": None if p.cached_input is None else str(p.cached_input),
         "output": str(p.output), "max_output_tokens": p.max_output_tokens}
        for name, p in sorted(table.prices.items())]}


@router.get("/upstreams")
async def get_upstreams(container: ContainerDep) -> dict[str, Any]:
    """The upstreams in routing order and their health as this replica sees it."""
    return {"items": [{
        "name": s.name, "kind": s.kind, "priority": s.priority, "weight": s.weight,
        "accepts_user_keys": s.accepts_user_keys, "models": None if s.models is None else list(s.models),
        "circuit": "open" if s.circuit_open else "closed", "cooldown_seconds": round(s.cooldown_seconds, 1),
        "consecutive_failures": s.consecutive_failures,
    } for s in sorted(container.upstream_status(), key=lambda s: (s.priority, s.name))]}


# -- writes ---------------------------------------------------------------------------------------

async def _key_item(container: Container, key_id: str) -> dict[str, Any]:
    found = await _db(container, queries.key, container.engine, _now(container), key_id)
    if found is None:
        raise _key_not_found()
    return _key(found)


@router.post("/keys", status_code=201)
async def create_key(container: ContainerDep, body: CreateKeyBody) -> dict[str, Any]:
    issued = await container.issue_key.execute(
        body.name, BudgetLimits(_limit(body.daily_limit_usd), _limit(body.monthly_limit_usd)),
        may_use_server_key=body.may_use_server_key, pii_policy=body.pii_policy)
    # The only answer that ever carries the secret: it is not stored, only its keyed hash.
    return {"key": issued.secret, "item": await _key_item(container, issued.key.id)}


@router.post("/keys/{key_id}/revoke")
async def revoke_key(container: ContainerDep, key_id: str) -> dict[str, Any]:
    await container.revoke_key.execute(key_id)
    # Revocation takes effect at once on this replica (others within the auth cache's TTL).
    container.authenticate.invalidate()
    return {"item": await _key_item(container, key_id)}


@router.put("/keys/{key_id}/budget")
async def set_budget(container: ContainerDep, key_id: str, body: BudgetBody) -> dict[str, Any]:
    await container.set_budget.execute(key_id, BudgetLimits(_limit(body.daily_limit_usd),
                                                            _limit(body.monthly_limit_usd)))
    # Cached identities carry the limits: drop them so the new caps apply now.
    container.authenticate.invalidate()
    return {"item": await _key_item(container, key_id)}


@router.put("/keys/{key_id}/pii-policy")
async def set_pii_policy(container: ContainerDep, key_id: str, body: PiiPolicyBody) -> dict[str, Any]:
    await container.set_pii_policy.execute(key_id, body.pii_policy)
    # Cached identities carry the policy: drop them so the new one applies now.
    container.authenticate.invalidate()
    return {"item": await _key_item(container, key_id)}


@router.post("/ledger/flush")
async def flush_ledger(container: ContainerDep) -> dict[str, Any]:
    """Returns once every ledger record this replica had queued is stored (or spooled), so a
    reader (a test, a script that reconciles spend) need not guess how long the writer takes."""
    await container.flush()
    return {"pending": container.ledger.pending(), "spooled": container.ledger.spooled}
