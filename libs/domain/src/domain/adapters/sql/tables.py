"""The tables. Alembic's env.py reads ``SQLModel.metadata`` from here.

Money columns are BIGINT nano-USD (see ``domain.money``). Indexes serve the console's
queries: by time, by conversation, by client key, by model.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Table, Text, UniqueConstraint, inspect
from sqlmodel import Field, SQLModel


def _ts(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class ClientKeyRow(SQLModel, table=True):
    __tablename__ = "client_keys"

    id: str = Field(primary_key=True, max_length=32)
    short_id: str = Field(max_length=16, index=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    daily_limit_nanos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    monthly_limit_nanos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    may_use_server_key: bool = True
    pii_policy: str | None = Field(default=None, max_length=8)  # off | mask | block; NULL: the server's
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))  # refused (401) from then on
    # The key whose budget counters this one draws on (the first of its rotation chain, so a
    # rotation never resets a budget); NULL: its own.
    budget_key_id: str | None = Field(default=None, max_length=32)


class ConversationRow(SQLModel, table=True):
    """A conversation is named by the caller (``request_id`` / ``X-Session-Id``) and scoped by
    owner, so two clients using the same name never share history."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("owner", "external_id", name="uq_conversations_owner_external_id"),
        Index("ix_conversations_updated_at", "updated_at"),
        # the console's conversation list filtered by client key, newest first
        Index("ix_conversations_owner_updated", "owner", "updated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=32)  # client key id, or "" for anonymous callers
    external_id: str = Field(max_length=200)
    turn_count: int = 0
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime = Field(sa_column=_ts(nullable=False))


class TurnRow(SQLModel, table=True):
    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("conversation_id", "turn_index", name="uq_turns_conversation_turn_index"),
        Index("ix_turns_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", ondelete="CASCADE")
    turn_index: int
    request_id: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    system_prompt: str = Field(default="", sa_column=Column(Text, nullable=False))
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    reply: str = Field(sa_column=Column(Text, nullable=False))
    model: str = Field(sa_column=Column(Text, nullable=False))  # whatever the upstream named it


class SpendRow(SQLModel, table=True):
    """One row per request that reached (or tried) the upstream. ``request_id`` is unique so
    a replayed spool never double-counts."""

    __tablename__ = "spend_ledger"
    __table_args__ = (
        Index("ix_spend_created_at", "created_at"),
        Index("ix_spend_client_created", "client_key_id", "created_at"),
        Index("ix_spend_model_created", "model", "created_at"),
        Index("ix_spend_conversation", "conversation_id"),
        Index("ix_spend_response_id", "response_id"),
        # the console's spend filtered by whose key paid
        Index("ix_spend_key_source_created", "key_source", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Text columns: a row is never refused for the length of what an upstream or a client
    # sent. Indexed values are bounded (prefix + hash, see ledger.bounded) to fit a B-tree.
    request_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    client_key_id: str | None = Field(default=None, max_length=32)
    conversation_id: int | None = Field(default=None)
    response_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # the upstream's id
    route: str = Field(sa_column=Column(Text, nullable=False))
    model: str = Field(sa_column=Column(Text, nullable=False))
    key_source: str = Field(max_length=8)
    fallback_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    outcome: str = Field(default="ok", sa_column=Column(Text, nullable=False))
    error_code: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # What had to be normalised to store the row ("nul_removed", "id_shortened",
    # "usage_negative", ...), comma-separated; None for a row stored as given.
    anomalies: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    charged_nanos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    priced: bool = True
    estimated: bool = False
    catalog_version: str = Field(sa_column=Column(Text, nullable=False))
    latency_ms: int = 0
    upstream: str | None = Field(default=None, max_length=64)  # the upstream that served (routing)
    upstream_attempts: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    # personal data the guard found in the request, per kind: '{"phone":2}' (never a value)
    pii_counts: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class BudgetCounterRow(SQLModel, table=True):
    """Spent and reserved nano-USD per scope ("key:<id>", "anonymous", "global") and period
    ("d:YYYY-MM-DD", "m:YYYY-MM"). Reservations update these rows under a row lock."""

    __tablename__ = "budget_counters"

    scope: str = Field(primary_key=True, max_length=48)
    period: str = Field(primary_key=True, max_length=16)
    spent_nanos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    reserved_nanos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class BudgetReservationRow(SQLModel, table=True):
    """Open holds. A hold is its request's write-ahead record: one its replica never settled
    becomes, once stale, that request's ledger row charged at ``amount_nanos``."""

    __tablename__ = "budget_reservations"
    __table_args__ = (Index("ix_budget_reservations_created_at", "created_at"),)

    id: str = Field(primary_key=True, max_length=32)
    lines: str = Field(sa_column=Column(Text, nullable=False))  # "scope|period;scope|period"
    amount_nanos: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    request_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    client_key_id: str | None = Field(default=None, max_length=32)
    route: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    model: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    catalog_version: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    key_source: str | None = Field(default=None, max_length=8)


class IdempotencyRow(SQLModel, table=True):
    """A request sent with an ``Idempotency-Key``: its body's hash and, once answered, the
    answer, so a retry replays it instead of calling (and paying) the upstream twice."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_created_at", "created_at"),)

    owner: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=200)
    body_hash: str = Field(max_length=64)
    status_code: int | None = None
    response: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class RequestLogRow(SQLModel, table=True):
    """Every client request once, refusals included (``domain.request_log``). Not unique
    on ``request_id``: a caller may reuse its own ids, and a log row is never replayed."""

    __tablename__ = "request_log"
    __table_args__ = (
        Index("ix_request_log_created_at", "created_at"),
        Index("ix_request_log_client_created", "client_key_id", "created_at"),
        Index("ix_request_log_status_created", "status", "created_at"),
        Index("ix_request_log_request_id", "request_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    route: str = Field(max_length=64)
    status: int
    error_code: str | None = Field(default=None, max_length=64)
    client_key_id: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=100)
    key_source: str | None = Field(default=None, max_length=8)
    fallback_reason: str | None = Field(default=None, max_length=32)
    upstream: str | None = Field(default=None, max_length=64)
    latency_ms: int = 0
    ttft_ms: int | None = None  # a stream's time to its first event; None for other answers
    cost_nanos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # personal data the guard found in the request, per kind: '{"card":2,"rrn":1}' (never a value)
    pii_counts: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AdminAuditRow(SQLModel, table=True):
    """Operator actions on client keys: who, what, when (never a key's secret)."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_ts(nullable=False))
    actor: str = Field(max_length=100)
    action: str = Field(max_length=32)
    key_id: str = Field(max_length=32)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))


class AlertRow(SQLModel, table=True):
    """Alerts raised; the primary key makes each (kind, subject, period) fire once across
    every replica."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_created_at", "created_at"),)

    kind: str = Field(primary_key=True, max_length=16)
    subject: str = Field(primary_key=True, max_length=160)
    period: str = Field(primary_key=True, max_length=32)
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    delivered: bool = False
class BackgroundResponseRow(SQLModel, table=True):
    """A background response (``background: true``) the upstream has not finished: its
    ledger row (``record``, JSON) waits for the final usage, and its hold
    (``reservation_id``) stays open meanwhile. Polled at ``next_poll_at`` by any replica."""

    __tablename__ = "background_responses"
    __table_args__ = (
        Index("ix_background_responses_next_poll_at", "next_poll_at"),
        Index("ix_background_responses_reservation_id", "reservation_id"),
    )

    response_id: str = Field(sa_column=Column(Text, primary_key=True))  # bounded like spend_ledger's
    request_id: str = Field(sa_column=Column(Text, nullable=False))
    client_key_id: str | None = Field(default=None, max_length=32)
    reservation_id: str | None = Field(default=None, max_length=32)
    record: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = 0
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    next_poll_at: datetime = Field(sa_column=_ts(nullable=False))


def table_of(row: type[SQLModel]) -> Table:
    """The Core table of a row class, typed (SQLModel sets ``__table__`` without declaring it)."""
    table = inspect(row).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{row.__name__} is not mapped to a table")
    return table
