"""The client keys screen: every key (never its hash) with what it spent and holds today and
this month, read from the budget counters, today's budget refusals, and when it was last
used."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import Engine, func, select

from domain import periods
from domain.adapters.sql.read_models.shared import KEYS, as_int, counters_c, keys_c, requests_c, utc
from domain.client_keys import scope_of
from domain.periods import KST, day_key, month_key


@dataclass(frozen=True, slots=True)
class KeyView:
    id: str
    short_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    daily_limit_nanos: int | None
    monthly_limit_nanos: int | None
    may_use_server_key: bool
    pii_policy: str | None  # None: the server's PII_POLICY
    spent_today_nanos: int
    spent_month_nanos: int
    held_today_nanos: int = 0
    held_month_nanos: int = 0
    refused_today: int = 0
    last_used_at: datetime | None = None  # the key's newest request-log entry (refusals count)
    expires_at: datetime | None = None  # refused (401) from then on; None: never
    budget_key_id: str | None = None  # whose budget it draws on (a rotation chain's first key); None: its own


def keys(engine: Engine, now: datetime, *, key_id: str | None = None, tz: tzinfo = KST) -> list[KeyView]:
    """Client keys (never their hashes) with what each spent and holds (open reservations)
    today and this month, read from the budget counters by primary key (the scope of the key's
    budget, ``domain.client_keys.scope_of`` of ``ClientKey.budget_owner`` — shared by a
    rotation chain — in the day and month periods of ``domain.budgets``), and
    how many of today's requests were refused for budget (402, from the request log) and when
    each key last made a request (any answer, refusals included): a correlated ``max`` per
    key, one backward probe of ``ix_request_log_client_created`` each, so 1,000 keys cost
    1,000 index lookups, never a scan of the log."""
    now = utc(now)
    day, month = day_key(now, tz), month_key(now, tz)
    q = select(keys_c.id, keys_c.short_id, keys_c.name, keys_c.created_at, keys_c.revoked_at,
               keys_c.daily_limit_nanos, keys_c.monthly_limit_nanos, keys_c.may_use_server_key, keys_c.pii_policy,
               keys_c.expires_at, keys_c.budget_key_id)
    q = q.where(keys_c.id == key_id) if key_id is not None else q.order_by(keys_c.created_at, keys_c.id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        # a rotated key's budget is its chain's (ClientKey.budget_owner): every key of the
        # chain shows what the chain spent and holds
        scope = {r.id: scope_of(r.budget_key_id or r.id) for r in rows}
        scopes = sorted(set(scope.values()))
        ids = [r.id for r in rows]
        latest = (select(func.max(requests_c.created_at)).where(requests_c.client_key_id == keys_c.id)
                  .correlate(KEYS).scalar_subquery())
        last_used: dict[str, datetime] = {}
        for start in range(0, len(ids), 500):
            last_used.update({r.id: _when(r.at) for r in conn.execute(
                select(keys_c.id, latest.label("at")).where(keys_c.id.in_(ids[start:start + 500])))
                if r.at is not None})
        spent: dict[tuple[str, str], tuple[int, int]] = {}
        for start in range(0, len(scopes), 500):
            part = scopes[start:start + 500]
            # scope IN (...) AND period IN (day, month): the same rows as a (scope, period)
            # tuple list, planned as one primary-key scan (the tuple list took 5x as long at
            # 1,000 keys)
            spent.update({(r.scope, r.period): (as_int(r.spent_nanos), as_int(r.reserved_nanos)) for r in conn.execute(
                select(counters_c.scope, counters_c.period, counters_c.spent_nanos, counters_c.reserved_nanos)
                .where(counters_c.scope.in_(part), counters_c.period.in_([day, month])))})
        refused_q = (select(requests_c.client_key_id, func.count().label("n"))
                     .where(requests_c.status == 402, requests_c.created_at >= periods.day_start(now, tz)))
        if key_id is not None:
            refused_q = refused_q.where(requests_c.client_key_id == key_id)
        refused = {r.client_key_id: as_int(r.n) for r in conn.execute(refused_q.group_by(requests_c.client_key_id))}
    out = []
    for r in rows:
        d_spent, d_held = spent.get((scope[r.id], day), (0, 0))
        m_spent, m_held = spent.get((scope[r.id], month), (0, 0))
        out.append(KeyView(id=r.id, short_id=r.short_id, name=r.name, created_at=utc(r.created_at),
                           revoked_at=utc(r.revoked_at) if r.revoked_at else None,
                           daily_limit_nanos=r.daily_limit_nanos, monthly_limit_nanos=r.monthly_limit_nanos,
                           may_use_server_key=bool(r.may_use_server_key), pii_policy=r.pii_policy,
                           spent_today_nanos=d_spent,
                           spent_month_nanos=m_spent, held_today_nanos=d_held, held_month_nanos=m_held,
                           refused_today=refused.get(r.id, 0), last_used_at=last_used.get(r.id),
                           expires_at=utc(r.expires_at) if r.expires_at else None,
                           budget_key_id=r.budget_key_id))
    return out


def _when(value: object) -> datetime:
    """A ``max(created_at)``: a datetime on PostgreSQL, text on SQLite."""
    return utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


def key(engine: Engine, now: datetime, key_id: str, tz: tzinfo = KST) -> KeyView | None:
    """One client key as ``keys`` shows it, or None."""
    found = keys(engine, now, key_id=key_id, tz=tz)
    return found[0] if found else None
