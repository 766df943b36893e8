"""The conversations screen: pages of conversations and one conversation's turns, each turn
with its ledger row."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from domain.adapters.sql.read_models.shared import (
    CONVERSATIONS,
    KEYS,
    SPEND,
    TURNS,
    as_int,
    convs_c,
    keys_c,
    spend_c,
    turns_c,
    utc,
)


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    """``since``/``until`` bound the conversation's last activity (``updated_at``); ``q``
    matches a turn's prompt or reply case-insensitively (a turn inside the range, if one is
    given)."""

    since: datetime | None = None
    until: datetime | None = None
    client_key_id: str | None = None
    model: str | None = None
    key_source: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationItem:
    id: int
    external_id: str
    owner: str
    owner_short_id: str | None
    owner_name: str | None
    turn_count: int
    created_at: datetime
    updated_at: datetime
    last_model: str | None
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class ConversationPage:
    items: list[ConversationItem]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class TurnView:
    turn_index: int
    created_at: datetime
    request_id: str
    system_prompt: str
    prompt: str
    reply: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None
    latency_ms: int | None
    key_source: str | None
    estimated: bool
    outcome: str | None = None
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    conversation: ConversationItem
    turns: list[TurnView] = field(default_factory=list)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conversation_conditions(flt: ConversationFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if flt.since is not None:
        conds.append(convs_c.updated_at >= utc(flt.since))
    if flt.until is not None:
        conds.append(convs_c.updated_at < utc(flt.until))
    if flt.client_key_id is not None:
        # A rotated key's conversations are its chain's (``ClientIdentity.owner``): the
        # chain's first key id. Its own id too, for rows stored before it was rotated into.
        chain = (select(func.coalesce(keys_c.budget_key_id, keys_c.id)).where(keys_c.id == flt.client_key_id)
                 .scalar_subquery())
        conds.append(convs_c.owner.in_([flt.client_key_id, chain]))
    # The EXISTS probes below are per-conversation lookups on uq_turns_conversation_turn_index
    # and ix_spend_conversation, so they cost one index probe per candidate conversation.
    if flt.model is not None:
        conds.append(exists().where(turns_c.conversation_id == convs_c.id, turns_c.model == flt.model))
    if flt.key_source is not None:
        conds.append(exists().where(spend_c.conversation_id == convs_c.id, spend_c.key_source == flt.key_source))
    if flt.q:
        pattern = _like_pattern(flt.q.strip())
        match = [turns_c.conversation_id == convs_c.id,
                 or_(turns_c.prompt.ilike(pattern, escape="\\"), turns_c.reply.ilike(pattern, escape="\\"))]
        # With a time range, the text must be in a turn of that range: the search then reads
        # only that range's turns (ix_turns_created_at) instead of every turn ever stored.
        if flt.since is not None:
            match.append(turns_c.created_at >= utc(flt.since))
        if flt.until is not None:
            match.append(turns_c.created_at < utc(flt.until))
        conds.append(exists().where(*match))
    return conds


def _conversation_select() -> Any:
    last = TURNS.alias("last_turn")
    return (select(convs_c.id, convs_c.external_id, convs_c.owner, convs_c.turn_count, convs_c.created_at,
                   convs_c.updated_at, keys_c.short_id, keys_c.name, last.c.model.label("last_model"))
            .select_from(CONVERSATIONS.outerjoin(KEYS, keys_c.id == convs_c.owner)
                         # the newest turn's index equals turn_count: one unique-index probe
                         .outerjoin(last, and_(last.c.conversation_id == convs_c.id,
                                               last.c.turn_index == convs_c.turn_count))))


def _conversation_items(conn: Any, rows: Sequence[Any]) -> list[ConversationItem]:
    ids = [r.id for r in rows]
    costs: dict[int, int] = {}
    if ids:
        costs = {r.conversation_id: as_int(r.cost) for r in conn.execute(
            select(spend_c.conversation_id, func.sum(spend_c.cost_nanos).label("cost"))
            .where(spend_c.conversation_id.in_(ids)).group_by(spend_c.conversation_id))}
    return [ConversationItem(id=r.id, external_id=r.external_id, owner=r.owner, owner_short_id=r.short_id,
                             owner_name=r.name, turn_count=r.turn_count, created_at=utc(r.created_at),
                             updated_at=utc(r.updated_at), last_model=r.last_model, cost_nanos=costs.get(r.id, 0))
            for r in rows]


def conversations(engine: Engine, flt: ConversationFilter, *, page: int = 1, page_size: int = 20) -> ConversationPage:
    """One page of conversations, most recently active first, and how many match in all."""
    page, page_size = max(1, page), max(1, page_size)
    conds = _conversation_conditions(flt)
    with engine.connect() as conn:
        total = as_int(conn.execute(select(func.count()).select_from(CONVERSATIONS).where(*conds)).scalar())
        rows = conn.execute(_conversation_select().where(*conds)
                            .order_by(convs_c.updated_at.desc(), convs_c.id.desc())
                            .limit(page_size).offset((page - 1) * page_size)).all()
        items = _conversation_items(conn, rows)
    return ConversationPage(items, total, page, page_size)


def conversation_turns(engine: Engine, conversation_id: int) -> ConversationDetail | None:
    """A conversation and its turns in order, each with its ledger row (joined by request id,
    unique in the ledger): tokens, cost, latency, key source."""
    with engine.connect() as conn:
        row = conn.execute(_conversation_select().where(convs_c.id == conversation_id)).one_or_none()
        if row is None:
            return None
        item = _conversation_items(conn, [row])[0]
        rows = conn.execute(
            select(turns_c.turn_index, turns_c.created_at, turns_c.request_id, turns_c.system_prompt, turns_c.prompt,
                   turns_c.reply, turns_c.model, spend_c.input_tokens, spend_c.cached_input_tokens,
                   spend_c.output_tokens, spend_c.reasoning_tokens, spend_c.cost_nanos, spend_c.latency_ms,
                   spend_c.key_source, spend_c.estimated, spend_c.outcome, spend_c.fallback_reason)
            .select_from(TURNS.outerjoin(SPEND, spend_c.request_id == turns_c.request_id))
            .where(turns_c.conversation_id == conversation_id).order_by(turns_c.turn_index)).all()
    turns = [TurnView(turn_index=r.turn_index, created_at=utc(r.created_at), request_id=r.request_id,
                      system_prompt=r.system_prompt, prompt=r.prompt, reply=r.reply, model=r.model,
                      input_tokens=as_int(r.input_tokens), cached_input_tokens=as_int(r.cached_input_tokens),
                      output_tokens=as_int(r.output_tokens), reasoning_tokens=as_int(r.reasoning_tokens),
                      cost_nanos=r.cost_nanos, latency_ms=r.latency_ms, key_source=r.key_source,
                      estimated=bool(r.estimated), outcome=r.outcome, fallback_reason=r.fallback_reason)
             for r in rows]
    return ConversationDetail(item, turns)


def conversation_of_request(engine: Engine, request_id: str) -> int | None:
    """The conversation a request's turn was stored in, when it has one."""
    with engine.connect() as conn:
        return conn.execute(select(spend_c.conversation_id).where(spend_c.request_id == request_id)).scalar()
