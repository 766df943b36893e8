"""``/admin/v1`` routes (docs/admin-api.md). Every route requires the admin token.

Reads run the synchronous read models of ``domain.adapters.sql.read_models`` (one module per
screen) in the container's database thread pool; writes go through the key use cases. Money
leaves as decimal strings (``money_text``): USD to 8 places, KRW at the configured rate to 2;
the CSV exports are written by ``csv_export``.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chat_api.admin import csv_export, money_text
from chat_api.bootstrap import Container
from chat_api.deps import ContainerDep, require_admin
from domain import periods
from domain.adapters.sql.read_models import (
    alerts,
    audit,
    conversations,
    keys,
    overview,
    pii,
    request_log,
    shared,
    spend,
)
from domain.adapters.sql.read_models.exports import Cursor
from domain.audit import AuditAction, AuditEntry, actor_name
from domain.client_keys import BudgetLimits
from domain.errors import InvalidInput, NotFound
from domain.money import Money
from domain.pii import PiiPolicy

T = TypeVar("T")

async def refuse_nul(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: one in a path or query value is refused here, once
    for every route, rather than failing the query (a 500)."""
    if "\x00" in request.url.path or any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items()):
        raise InvalidInput("nul_character")


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(require_admin), Depends(refuse_nul)])

KeySourceParam = Literal["user", "server"]
UsdAmount = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=9)]
_DAY = timedelta(days=1)


def _within_calendar(value: datetime | None) -> datetime | None:
    """A moment the read models can shift by a day and a time zone either way (year 1 or
    9999 overflows there: a 500), refused as invalid input instead."""
    if value is None:
        return None
    try:
        moment = shared.utc(value)
    except OverflowError:
        moment = None
    if moment is None or not datetime(1, 1, 3, tzinfo=UTC) <= moment <= datetime(9999, 12, 29, tzinfo=UTC):
        raise ValueError("out of the supported range (years 1-9999)")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL character")
    return value


# -- request bodies -------------------------------------------------------------------------------

class CreateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, AfterValidator(_no_nul)] = Field(min_length=1, max_length=100)
    daily_limit_usd: UsdAmount | None = None
    monthly_limit_usd: UsdAmount | None = None
    may_use_server_key: bool = True
    pii_policy: PiiPolicy | None = None  # None: the server's PII_POLICY
    expires_at: datetime | None = None  # None: never; without an offset: UTC


class ExpiryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_at: datetime | None  # null: never expires


class PiiPolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pii_policy: PiiPolicy | None  # null: back to the server's PII_POLICY


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_limit_usd: UsdAmount | None
    monthly_limit_usd: UsdAmount | None


# -- formatting -----------------------------------------------------------------------------------

def _usd_text(nanos: int | None) -> str | None:
    """Nano-USD as USD text to 8 places; None (unknown, uncapped) stays None."""
    return None if nanos is None else money_text.usd_8(nanos)


def _krw_text(nanos: int | None, rate: Decimal) -> str | None:
    return None if nanos is None else format(Money(nanos).krw(rate), "f")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(nanos: int | None, rate: Decimal) -> dict[str, str | None]:
    return {"cost_usd": _usd_text(nanos), "cost_krw": _krw_text(nanos, rate)}


def _totals(t: shared.Totals, rate: Decimal) -> dict[str, Any]:
    return {"requests": t.requests, "errors": t.errors, "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens, **_money(t.cost_nanos, rate),
            "server_cost_usd": _usd_text(t.cost_nanos - t.user_cost_nanos),
            "server_cost_krw": _krw_text(t.cost_nanos - t.user_cost_nanos, rate),
            "user_cost_usd": _usd_text(t.user_cost_nanos), "user_cost_krw": _krw_text(t.user_cost_nanos, rate),
            "unpriced_requests": t.unpriced}


def _request(r: request_log.RequestItem, rate: Decimal) -> dict[str, Any]:
    return {"request_id": r.request_id, "created_at": _iso(r.created_at), "route": r.route, "status": r.status,
            "error_code": r.error_code, "client_key_id": r.client_key_id, "model": r.model,
            "key_source": r.key_source, "fallback_reason": r.fallback_reason, "upstream": r.upstream,
            "latency_ms": r.latency_ms, "ttft_ms": r.ttft_ms, "cost_usd": _usd_text(r.cost_nanos), "cost_krw": _krw_text(r.cost_nanos, rate),
            "client_name": r.client_name, "client_short_id": r.client_short_id, "pii_counts": r.pii_counts}


def _conversation(c: conversations.ConversationItem, rate: Decimal) -> dict[str, Any]:
    return {"id": c.id, "external_id": c.external_id, "owner": c.owner, "owner_short_id": c.owner_short_id,
            "owner_name": c.owner_name, "turn_count": c.turn_count, "created_at": _iso(c.created_at),
            "updated_at": _iso(c.updated_at), "last_model": c.last_model, **_money(c.cost_nanos, rate)}


def _turn(t: conversations.TurnView, rate: Decimal) -> dict[str, Any]:
    return {"turn_index": t.turn_index, "created_at": _iso(t.created_at), "request_id": t.request_id,
            "system_prompt": t.system_prompt, "prompt": t.prompt, "reply": t.reply, "model": t.model,
            "input_tokens": t.input_tokens, "cached_input_tokens": t.cached_input_tokens,
            "output_tokens": t.output_tokens, "reasoning_tokens": t.reasoning_tokens,
            **_money(t.cost_nanos, rate), "latency_ms": t.latency_ms, "key_source": t.key_source,
            "estimated": t.estimated, "outcome": t.outcome, "fallback_reason": t.fallback_reason}


def _key(k: keys.KeyView) -> dict[str, Any]:
    return {"id": k.id, "short_id": k.short_id, "name": k.name, "created_at": _iso(k.created_at),
            "revoked_at": _iso(k.revoked_at), "daily_limit_usd": _usd_text(k.daily_limit_nanos),
            "monthly_limit_usd": _usd_text(k.monthly_limit_nanos), "may_use_server_key": k.may_use_server_key,
            "pii_policy": k.pii_policy,
            "spent_today_usd": _usd_text(k.spent_today_nanos), "spent_month_usd": _usd_text(k.spent_month_nanos),
            "held_today_usd": _usd_text(k.held_today_nanos), "held_month_usd": _usd_text(k.held_month_nanos),
            "refused_today": k.refused_today, "utilisation_pct": _utilisation(k),
            "last_used_at": _iso(k.last_used_at), "expires_at": _iso(k.expires_at)}


def _utilisation(k: keys.KeyView) -> float | None:
    """The fuller of the key's two budgets, spent plus held, in percent (None: uncapped)."""
    pcts = [100.0 if cap <= 0 else (spent + held) * 100.0 / cap
            for spent, held, cap in ((k.spent_today_nanos, k.held_today_nanos, k.daily_limit_nanos),
                                     (k.spent_month_nanos, k.held_month_nanos, k.monthly_limit_nanos))
            if cap is not None]
    return round(max(pcts), 1) if pcts else None


def _window(w: request_log.Window) -> dict[str, Any]:
    return {"requests": w.requests, "errors": w.errors, "by_class": w.by_class, "p50_ms": w.p50_ms,
            "p95_ms": w.p95_ms, "ttft_p50_ms": w.ttft_p50_ms, "ttft_p95_ms": w.ttft_p95_ms, "streams": w.streams}


async def _last_15m(container: Container) -> dict[str, Any]:
    since = _now(container) - timedelta(minutes=15)
    window = await _db(container, request_log.now_window, container.engine, since)
    return {"since": _iso(since), **_window(window)}


def _range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and shared.utc(since) >= shared.utc(until):
        raise InvalidInput("invalid_time_range", field="since")


def _key_not_found() -> NotFound:
    return NotFound("client_key_not_found")


async def _db(container: Container, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(container.executor, lambda: fn(*args, **kwargs))


def _now(container: Container) -> datetime:
    return container.clock.now()


# -- reads ----------------------------------------------------------------------------------------

Since = Annotated[datetime | None, Query(description="inclusive, ISO 8601 (UTC if no offset)"),
                  AfterValidator(_within_calendar)]
Until = Annotated[datetime | None, Query(description="exclusive, ISO 8601 (UTC if no offset)"),
                  AfterValidator(_within_calendar)]
ConversationId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # the table's integer key
ClientKeyId = Annotated[str | None, Query(max_length=32)]
ModelName = Annotated[str | None, Query(max_length=100)]


@router.get("/overview")
async def get_overview(container: ContainerDep) -> dict[str, Any]:
    rate = container.settings.usd_krw_rate
    now, tz = _now(container), container.settings.tz
    models = container.models
    # one top-models row per family: the upstream's snapshot name and the requested name are one model
    ov = await _db(container, overview.overview, container.engine, now, tz=tz,
                   model_group=lambda m: models.family_of(m) or m)
    key_views = await _db(container, keys.keys, container.engine, now, tz=tz)
    pct = float(container.settings.alert_budget_pct)
    risk = sorted((k for k in key_views if k.revoked_at is None
                   and (k.refused_today or (_utilisation(k) or 0.0) >= pct)),
                  key=lambda k: (-(_utilisation(k) or 0.0), -k.refused_today))
    return {
        "usd_krw_rate": str(rate),
        "timezone": container.settings.budget_timezone,
        "today_start": _iso(periods.day_start(now, tz)),
        "budget_risk": [_key(k) for k in risk[:50]],
        "last_15m": await _last_15m(container),
        "today": _totals(ov.today, rate),
        "month": _totals(ov.month, rate),
        # a model whose every request is unpriced has no cost (null), not a cost of 0
        "top_models": [{"model": r.key, "requests": r.totals.requests, "unpriced_requests": r.totals.unpriced,
                        **_money(None if r.totals.unpriced == r.totals.requests else r.totals.cost_nanos, rate)}
                       for r in ov.top_models],
        "top_clients": [{"client_key_id": r.client_key_id, "short_id": r.short_id, "name": r.name,
                         "requests": r.totals.requests, **_money(r.totals.cost_nanos, rate)} for r in ov.top_clients],
        "by_day": [{"day": r.key, "requests": r.totals.requests, **_money(r.totals.cost_nanos, rate)}
                   for r in ov.by_day],
    }


@router.get("/now")
async def get_now(container: ContainerDep) -> dict[str, Any]:
    """The last 15 minutes of the request log (the console's banner on every page): by
    status class, latency and a stream's time to first token (p50/p95): index range scans."""
    return {**await _last_15m(container), "error_rate_threshold": container.settings.alert_error_rate}


@router.get("/timeseries")
async def get_timeseries(container: ContainerDep, hours: Annotated[int, Query(ge=1, le=168)] = 24,
                         bucket_minutes: Annotated[int, Query(ge=5, le=1440)] = 60) -> dict[str, Any]:
    """The last ``hours`` in buckets (oldest first, empty ones included): client requests by
    status class, latency and TTFT percentiles from the request log, cost from the ledger."""
    rate = container.settings.usd_krw_rate
    buckets = await _db(container, request_log.timeseries, container.engine, _now(container), hours=hours,
                        bucket_seconds=bucket_minutes * 60)
    return {"hours": hours, "bucket_minutes": bucket_minutes, "buckets": [
        {"start": _iso(b.start), **_window(b.window), **_money(b.window.cost_nanos, rate),
         "unpriced_requests": b.window.unpriced} for b in buckets]}


@router.get("/conversations")
async def list_conversations(
    container: ContainerDep, since: Since = None, until: Until = None, client_key_id: ClientKeyId = None,
    model: ModelName = None, key_source: KeySourceParam | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1, page_size: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    _range(since, until)
    text = (q or "").strip() or None
    flt = conversations.ConversationFilter(since, until, client_key_id or None, model or None, key_source, text)
    result = await _db(container, conversations.conversations, container.engine, flt, page=page, page_size=page_size)
    rate = container.settings.usd_krw_rate
    return {"items": [_conversation(c, rate) for c in result.items], "total": result.total,
            "page": result.page, "page_size": result.page_size}


@router.get("/conversations/{conversation_id}/turns")
async def conversation_turns(container: ContainerDep, conversation_id: ConversationId) -> dict[str, Any]:
    detail = await _db(container, conversations.conversation_turns, container.engine, conversation_id)
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
    flt = shared.LedgerFilter(since, until, client_key_id or None, model or None, key_source)
    rows, total = await _db(container, spend.spend, container.engine, group_by, flt, tz=container.settings.tz)
    rate = container.settings.usd_krw_rate
    return {"group_by": group_by,
            "rows": [{"key": r.key, "label": r.label, **_totals(r.totals, rate)} for r in rows],
            "total": _totals(total, rate)}


CSV_LIMIT_HEADER = "X-Row-Limit"


def _csv_response(container: Container, chunks: Any, name: str, since: datetime | None, until: datetime | None,
                  limit: int) -> StreamingResponse:
    loop = asyncio.get_running_loop()

    async def body() -> AsyncIterator[bytes]:
        # A BOM first, so Excel opens the UTF-8 (Korean names) correctly.
        yield "\ufeff".encode()
        # Each chunk is one short query: pull it in the database pool, never on the loop.
        while True:
            chunk = await loop.run_in_executor(container.executor, next, chunks, None)
            if chunk is None:
                return
            yield chunk.encode("utf-8")

    tz = container.settings.tz

    def stamp(value: datetime | None, default: str) -> str:
        return default if value is None else shared.utc(value).astimezone(tz).strftime("%Y%m%d-%H%M")

    filename = f"{name}_{stamp(since, 'start')}_{stamp(until or _now(container), 'now')}.csv"
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      CSV_LIMIT_HEADER: str(limit)})


@router.get("/pii")
async def get_pii(container: ContainerDep, since: Since = None, until: Until = None,
                  client_key_id: ClientKeyId = None) -> dict[str, Any]:
    """Personal data the guard found, per kind, in total and per client key: ``total`` /
    ``counts`` in requests sent upstream (masked, or as is under ``off``; from the ledger
    rows), ``blocked`` in requests refused under ``block`` (from the request log). Counts,
    never values. Without ``since`` or ``until``, the current month of BUDGET_TIMEZONE."""
    _range(since, until)
    since = since if since is not None or until is not None else periods.month_start(_now(container), container.settings.tz)
    flt = shared.LedgerFilter(since, until, client_key_id or None)
    found = await _db(container, pii.pii_counts, container.engine, flt)
    return {"since": _iso(since), "until": _iso(until), "total": found.total, "blocked": found.blocked,
            "by_key": [{"client_key_id": k.client_key_id, "short_id": k.short_id, "name": k.name, "counts": k.counts,
                        "blocked": k.blocked} for k in found.by_key]}


BeforeId = Annotated[int | None, Query(ge=1, description="with until: the previous part's last row_id")]


def _part(until: datetime | None, before_id: int | None) -> tuple[datetime | None, Cursor | None]:
    """(the filter's exclusive ``until``, the keyset cursor): with ``before_id`` the export
    continues after the row (``until``, ``before_id``), its time's other rows included."""
    if before_id is None:
        return until, None
    if until is None:
        raise InvalidInput("invalid_field", field="before_id", reason="with_until")
    return None, (until, before_id)


@router.get("/spend/ledger.csv")
async def ledger_csv(
    container: ContainerDep, since: Since = None, until: Until = None, client_key_id: ClientKeyId = None,
    model: ModelName = None, key_source: KeySourceParam | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000, before_id: BeforeId = None,
) -> StreamingResponse:
    """Newest first; at most ``limit`` rows (a full export has exactly ``limit`` data rows:
    ask again with ``until`` = the last row's ``created_at`` and ``before_id`` = its
    ``row_id`` for the rest)."""
    _range(since, until)
    bound, after = _part(until, before_id)
    flt = shared.LedgerFilter(since, bound, client_key_id or None, model or None, key_source)
    chunks = csv_export.ledger_csv(container.engine, flt, limit=limit, tz=container.settings.tz,
                                krw_rate=container.settings.usd_krw_rate, after=after)
    return _csv_response(container, chunks, "ledger", since, until, limit)


StatusParam = Annotated[str | None, Query(max_length=5, description="402, 4xx, 5xx or error")]


def _status(status: str | None) -> str | None:
    if status is None or not status.strip():
        return None
    if not request_log.valid_status_filter(status):
        raise InvalidInput("invalid_field", field="status", reason="status_filter")
    return status.strip()


@router.get("/requests")
async def list_requests(
    container: ContainerDep, status: StatusParam = None, client_key_id: ClientKeyId = None,
    since: Since = None, until: Until = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1, page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The request log, newest first: every client request once, refusals included."""
    _range(since, until)
    flt = request_log.RequestFilter(_status(status), client_key_id or None, since, until)
    result = await _db(container, request_log.requests, container.engine, flt, page=page, page_size=page_size)
    rate = container.settings.usd_krw_rate
    return {"items": [_request(r, rate) for r in result.items], "total": result.total,
            "page": result.page, "page_size": result.page_size}


@router.get("/requests.csv")
async def requests_csv(
    container: ContainerDep, status: StatusParam = None, client_key_id: ClientKeyId = None,
    since: Since = None, until: Until = None, limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    before_id: BeforeId = None,
) -> StreamingResponse:
    """As ``/spend/ledger.csv``: the next part with ``until`` and ``before_id``."""
    _range(since, until)
    bound, after = _part(until, before_id)
    flt = request_log.RequestFilter(_status(status), client_key_id or None, since, bound)
    chunks = csv_export.requests_csv(container.engine, flt, limit=limit, tz=container.settings.tz,
                                  krw_rate=container.settings.usd_krw_rate, after=after)
    return _csv_response(container, chunks, "requests", since, until, limit)


@router.get("/requests/{request_id:path}")
async def request_detail(container: ContainerDep, request_id: str) -> dict[str, Any]:
    """A request's log entries (a caller may reuse an id) and its conversation, if any."""
    page = await _db(container, request_log.requests, container.engine, request_log.RequestFilter(), page=1, page_size=1,
                     request_id=request_id)
    if not page.items:
        raise NotFound("request_not_found")
    conversation = await _db(container, conversations.conversation_of_request, container.engine, request_id)
    rate = container.settings.usd_krw_rate
    return {"item": _request(page.items[0], rate), "conversation_id": conversation}


@router.get("/audit")
async def list_audit(container: ContainerDep, page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                     page_size: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    items, total = await _db(container, audit.audit, container.engine, page=page, page_size=page_size)
    return {"items": [{"at": _iso(a.at), "actor": a.actor, "action": a.action, "key_id": a.key_id,
                       "key_name": a.key_name, "key_short_id": a.key_short_id, "detail": a.detail} for a in items],
            "total": total, "page": page, "page_size": page_size}


@router.get("/alerts")
async def list_alerts(container: ContainerDep) -> dict[str, Any]:
    items = await _db(container, alerts.alerts, container.engine)
    return {"items": [{"kind": a.kind, "subject": a.subject, "period": a.period, "created_at": _iso(a.created_at),
                       "text": a.text, "delivered": a.delivered} for a in items]}


@router.get("/keys")
async def list_keys(container: ContainerDep) -> dict[str, Any]:
    items = await _db(container, keys.keys, container.engine, _now(container), tz=container.settings.tz)
    return {"items": [_key(k) for k in items], "timezone": container.settings.budget_timezone}


@router.get("/prices")
async def get_prices(container: ContainerDep) -> dict[str, Any]:
    """The catalogue, and the operator's ``EXTRA_MODELS``: allowed, unpriced (no price is
    not a price of 0)."""
    table = container.prices
    return {"version": table.version, "models": [
        {"model": name, "input": str(p.input), "cached_input": None if p.cached_input is None else str(p.cached_input),
         "output": str(p.output), "max_output_tokens": p.max_output_tokens}
        for name, p in sorted(table.prices.items())], "extra_models": list(container.models.extra())}


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
    found = await _db(container, keys.key, container.engine, _now(container), key_id, container.settings.tz)
    if found is None:
        raise _key_not_found()
    return _key(found)


ActorHeader = Annotated[str | None, Header(alias="X-Admin-Actor", max_length=200)]


async def _audit(container: Container, actor: str | None, action: AuditAction, key_id: str,
                 detail: dict[str, str | None]) -> None:
    await container.audit.append(AuditEntry(_now(container), actor_name(actor), action, key_id, detail))


def _utc_or_none(value: datetime | None) -> datetime | None:
    """A body's time; without an offset it is UTC, as the API's times are."""
    return None if value is None else value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _limit_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@router.post("/keys", status_code=201)
async def create_key(container: ContainerDep, body: CreateKeyBody, actor: ActorHeader = None) -> dict[str, Any]:
    issued = await container.issue_key.execute(
        body.name, BudgetLimits.from_usd(body.daily_limit_usd, body.monthly_limit_usd),
        may_use_server_key=body.may_use_server_key, pii_policy=body.pii_policy,
        expires_at=_utc_or_none(body.expires_at))
    await _audit(container, actor, AuditAction.KEY_CREATED, issued.key.id,
                 {"name": body.name, "daily_limit_usd": _limit_text(body.daily_limit_usd),
                  "monthly_limit_usd": _limit_text(body.monthly_limit_usd),
                  "may_use_server_key": str(body.may_use_server_key).lower(),
                  "pii_policy": body.pii_policy.value if body.pii_policy is not None else None,
                  "expires_at": _iso(_utc_or_none(body.expires_at))})
    # The only answer that ever carries the secret: it is not stored, only its keyed hash.
    return {"key": issued.secret, "item": await _key_item(container, issued.key.id)}


@router.post("/keys/{key_id}/revoke")
async def revoke_key(container: ContainerDep, key_id: str, actor: ActorHeader = None) -> dict[str, Any]:
    await container.revoke_key.execute(key_id)
    # Revocation takes effect at once on this replica (others within the auth cache's TTL).
    container.authenticate.invalidate()
    item = await _key_item(container, key_id)
    await _audit(container, actor, AuditAction.KEY_REVOKED, key_id, {"name": item["name"]})
    return {"item": item}


@router.post("/keys/{key_id}/rotate", status_code=201)
async def rotate_key(container: ContainerDep, key_id: str, actor: ActorHeader = None) -> dict[str, Any]:
    """A new key with the old one's name, caps, server-key permission and PII policy; the old
    key revoked. The new secret is in this answer only."""
    rotated = await container.rotate_key.execute(key_id)
    container.authenticate.invalidate()  # the old key stops at once on this replica
    new, old = rotated.issued.key, rotated.previous
    await _audit(container, actor, AuditAction.KEY_ROTATED, new.id,
                 {"name": new.name, "previous_key_id": old.id, "previous_short_id": old.short_id})
    return {"key": rotated.issued.secret, "item": await _key_item(container, new.id),
            "previous": await _key_item(container, old.id)}


@router.put("/keys/{key_id}/budget")
async def set_budget(container: ContainerDep, key_id: str, body: BudgetBody, actor: ActorHeader = None) -> dict[str, Any]:
    before = await _key_item(container, key_id)
    await container.set_budget.execute(key_id, BudgetLimits.from_usd(body.daily_limit_usd,
                                                                     body.monthly_limit_usd))
    # Cached identities carry the limits: drop them so the new caps apply now.
    container.authenticate.invalidate()
    await _audit(container, actor, AuditAction.BUDGET_CHANGED, key_id,
                 {"name": before["name"], "daily_limit_usd_before": before["daily_limit_usd"],
                  "monthly_limit_usd_before": before["monthly_limit_usd"],
                  "daily_limit_usd": _limit_text(body.daily_limit_usd),
                  "monthly_limit_usd": _limit_text(body.monthly_limit_usd)})
    return {"item": await _key_item(container, key_id)}


@router.put("/keys/{key_id}/expiry")
async def set_expiry(container: ContainerDep, key_id: str, body: ExpiryBody, actor: ActorHeader = None) -> dict[str, Any]:
    """When the key stops working (null: never); a past moment is refused: revoke instead."""
    before = await _key_item(container, key_id)
    expires_at = _utc_or_none(body.expires_at)
    await container.set_expiry.execute(key_id, expires_at)
    container.authenticate.invalidate()  # cached identities carry the old expiry
    await _audit(container, actor, AuditAction.EXPIRY_CHANGED, key_id,
                 {"name": before["name"], "expires_at_before": before["expires_at"], "expires_at": _iso(expires_at)})
    return {"item": await _key_item(container, key_id)}


@router.put("/keys/{key_id}/pii-policy")
async def set_pii_policy(container: ContainerDep, key_id: str, body: PiiPolicyBody,
                         actor: ActorHeader = None) -> dict[str, Any]:
    before = await _key_item(container, key_id)
    await container.set_pii_policy.execute(key_id, body.pii_policy)
    # Cached identities carry the policy: drop them so the new one applies now.
    container.authenticate.invalidate()
    # null on either side: the server's PII_POLICY
    await _audit(container, actor, AuditAction.PII_POLICY_CHANGED, key_id,
                 {"name": before["name"], "pii_policy_before": before["pii_policy"],
                  "pii_policy": body.pii_policy.value if body.pii_policy is not None else None})
    return {"item": await _key_item(container, key_id)}


@router.post("/ledger/flush")
async def flush_ledger(container: ContainerDep) -> dict[str, Any]:
    """Returns once every ledger record this replica had queued is stored (or spooled), so a
    reader (a test, a script that reconciles spend) need not guess how long the writer takes.
    The request log's writer is waited for too."""
    await container.flush()
    return {"pending": container.ledger.pending(), "spooled": container.ledger.spooled}
