"""The audit log of operator actions: who changed which client key, how, and when."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AuditAction(StrEnum):
    KEY_CREATED = "key_created"
    KEY_REVOKED = "key_revoked"
    KEY_ROTATED = "key_rotated"
    BUDGET_CHANGED = "budget_changed"
    PII_POLICY_CHANGED = "pii_policy_changed"
    EXPIRY_CHANGED = "expiry_changed"


MAX_ACTOR = 100


def actor_name(raw: str | None) -> str:
    """Who acted, as the caller names itself (the console sends its operator's label); kept
    printable and short, "admin-api" when unnamed."""
    cleaned = "".join(ch for ch in (raw or "") if ch.isprintable()).strip()[:MAX_ACTOR]
    return cleaned or "admin-api"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action. ``detail`` holds the change (names and limits as USD strings), never a
    secret: a created key's secret is shown once and recorded nowhere."""

    at: datetime
    actor: str
    action: AuditAction
    key_id: str
    detail: dict[str, str | None]
