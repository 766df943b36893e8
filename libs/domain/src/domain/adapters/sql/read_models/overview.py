"""The overview screen: today and this month, the month's top models and clients, and spend
per day over the last weeks."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, and_, case, func, select, tuple_

from domain import periods
from domain.adapters.sql.read_models.shared import (
    GroupRow,
    Totals,
    as_int,
    key_names,
    local_day,
    requests_c,
    spend_c,
    totals_columns,
)
from domain.periods import KST


@dataclass(frozen=True, slots=True)
class ClientGroupRow:
    client_key_id: str | None
    short_id: str | None
    name: str | None
    totals: Totals


@dataclass(frozen=True, slots=True)
class Overview:
    today: Totals
    month: Totals
    top_models: list[GroupRow]
    top_clients: list[ClientGroupRow]
    by_day: list[GroupRow]


def overview(engine: Engine, now: datetime, *, top: int = 5, days: int = 30, tz: tzinfo = KST,
             model_group: Callable[[str], str] = str) -> Overview:
    """Today and this month (local days of the budget time zone, like budget periods), the
    month's top models and clients, and spend per day over the last ``days`` days: one range
    scan on ``ix_spend_created_at``.

    ``requests`` and ``errors`` of today, the month and each day are client requests from the
    request log (a fallback is one request, a refusal is an error), one more range scan on
    ``ix_request_log_created_at``; tokens and money come from the ledger.

    PostgreSQL aggregates every panel in that one pass with GROUPING SETS; SQLite (small,
    embedded installs) groups by (day, model, client) and the panels are folded here.

    ``model_group`` names the top-models row a ledger model counts under: the gateway passes
    the model family, so a snapshot the upstream answered with (``gpt-4o-mini-2024-07-18``)
    and the name the client asked for are one row.

    Nothing after today counts: a row dated tomorrow (a replica whose clock runs ahead, a
    test's or an import's future timestamp) is in no panel, this month's totals included."""
    month0 = periods.month_start(now, tz)
    # the next local midnight: 36 hours past today's start is always tomorrow, DST or not
    end = periods.day_start(periods.day_start(now, tz) + timedelta(hours=36), tz)
    today_s, month_s = periods.local_date(now, tz), periods.local_date(month0, tz)
    first_day = (datetime.fromisoformat(today_s) - timedelta(days=days - 1)).date()
    window0 = periods.day_start(datetime.combine(first_day, datetime.min.time(), tzinfo=tz), tz)
    window_s = first_day.isoformat()
    today, month = _Acc(), _Acc()
    per_day: dict[str, _Acc] = {}
    per_model: dict[str, _Acc] = {}
    per_client: dict[str | None, _Acc] = {}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            _overview_grouping_sets(conn, engine, tz, min(month0, window0), end, month0, month, per_day,
                                    per_model, per_client, model_group)
        else:
            day = local_day(engine, tz).label("day")
            rows = conn.execute(
                select(day, spend_c.model, spend_c.client_key_id, *totals_columns())
                .where(spend_c.created_at >= min(month0, window0), spend_c.created_at < end)
                .group_by(day, spend_c.model, spend_c.client_key_id)).all()
            for r in rows:
                d = str(r.day)[:10]
                per_day.setdefault(d, _Acc()).add(r)
                if d >= month_s:
                    month.add(r)
                    per_model.setdefault(model_group(r.model), _Acc()).add(r)
                    per_client.setdefault(r.client_key_id, _Acc()).add(r)
        if today_s in per_day:
            today = per_day[today_s]
        counts = _request_counts_by_day(conn, engine, tz, min(month0, window0), end)

        def ranked(groups: dict[Any, _Acc]) -> list[tuple[Any, Totals]]:
            items = sorted(groups.items(), key=lambda kv: (-kv[1].cost_nanos, -kv[1].requests, str(kv[0])))
            return [(k, acc.totals()) for k, acc in items[:top]]

        models = ranked(per_model)
        clients = ranked(per_client)
        names = key_names(conn, [k for k, _ in clients if k])

    def with_counts(t: Totals, requests: int, errors: int) -> Totals:
        return Totals(requests, errors, t.input_tokens, t.output_tokens, t.cost_nanos, t.user_cost_nanos, t.unpriced)

    month_counts = [v for d, v in counts.items() if d >= month_s]
    by_day = []
    for i in range(days):
        d = (first_day + timedelta(days=i)).isoformat()
        totals = per_day[d].totals() if d in per_day and d >= window_s else Totals()
        by_day.append(GroupRow(d, d, with_counts(totals, *counts.get(d, (0, 0)))))
    return Overview(
        today=with_counts(today.totals(), *counts.get(today_s, (0, 0))),
        month=with_counts(month.totals(), sum(r for r, _ in month_counts), sum(e for _, e in month_counts)),
        top_models=[GroupRow(k, k, t) for k, t in models],
        top_clients=[_client_group(k, names.get(k), t) for k, t in clients],
        by_day=by_day)


def _request_counts_by_day(conn: Any, engine: Engine, tz: tzinfo, start: datetime,
                           end: datetime) -> dict[str, tuple[int, int]]:
    """Client requests and errors (status >= 400) per local day from ``start`` to ``end``."""
    day = local_day(engine, tz, table="request_log").label("day")
    rows = conn.execute(select(day, func.count().label("n"),
                               func.coalesce(func.sum(case((requests_c.status >= 400, 1), else_=0)), 0).label("e"))
                        .where(requests_c.created_at >= start, requests_c.created_at < end).group_by(day)).all()
    return {str(r.day)[:10]: (as_int(r.n), as_int(r.e)) for r in rows}


def _overview_grouping_sets(conn: Any, engine: Engine, tz: tzinfo, start: datetime, end: datetime, month0: datetime,
                            month: _Acc,
                            per_day: dict[str, _Acc], per_model: dict[str, _Acc],
                            per_client: dict[str | None, _Acc], model_group: Callable[[str], str]) -> None:
    day = local_day(engine, tz)
    in_month = spend_c.created_at >= month0
    # Every set reads the same scan: days over the whole window; models, clients and the
    # month's total only over this month (the window can start in the previous month).
    cols = [
        func.count().filter(in_month).label("m_requests"),
        func.count().filter(and_(in_month, spend_c.outcome == "error")).label("m_errors"),
        func.sum(spend_c.input_tokens).filter(in_month).label("m_input_tokens"),
        func.sum(spend_c.output_tokens).filter(in_month).label("m_output_tokens"),
        func.sum(spend_c.cost_nanos).filter(in_month).label("m_cost_nanos"),
        func.count().filter(and_(in_month, spend_c.cost_nanos.is_(None))).label("m_unpriced"),
        *totals_columns(),
        func.grouping(day).label("g_day"), func.grouping(spend_c.model).label("g_model"),
        func.grouping(spend_c.client_key_id).label("g_client"),
    ]
    rows = conn.execute(
        select(day.label("day"), spend_c.model, spend_c.client_key_id, *cols)
        .where(spend_c.created_at >= start, spend_c.created_at < end)
        .group_by(func.grouping_sets(tuple_(day), tuple_(spend_c.model), tuple_(spend_c.client_key_id), tuple_()))
    ).all()
    for r in rows:
        # the month's user-paid share is summed from its days below (one aggregate fewer here)
        m = _Acc(as_int(r.m_requests), as_int(r.m_errors), as_int(r.m_input_tokens), as_int(r.m_output_tokens),
                 as_int(r.m_cost_nanos), 0, as_int(r.m_unpriced))
        if not r.g_day:
            per_day[str(r.day)[:10]] = _Acc(as_int(r.requests), as_int(r.errors), as_int(r.input_tokens),
                                             as_int(r.output_tokens), as_int(r.cost_nanos),
                                             as_int(r.user_cost_nanos), as_int(r.unpriced))
        elif not r.g_model:
            if m.requests:
                per_model.setdefault(model_group(r.model), _Acc()).add(m)
        elif not r.g_client:
            if m.requests:
                per_client[r.client_key_id] = m
        else:
            month.add(m)
    month0_s = periods.local_date(month0, tz)
    month.user_cost_nanos = sum(acc.user_cost_nanos for d, acc in per_day.items() if d >= month0_s)


@dataclass(slots=True)
class _Acc:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    user_cost_nanos: int = 0
    unpriced: int = 0

    def add(self, row: Any) -> None:  # a query row or another _Acc
        self.requests += as_int(row.requests)
        self.errors += as_int(row.errors)
        self.input_tokens += as_int(row.input_tokens)
        self.output_tokens += as_int(row.output_tokens)
        self.cost_nanos += as_int(row.cost_nanos)
        self.user_cost_nanos += as_int(row.user_cost_nanos)
        self.unpriced += as_int(row.unpriced)

    def totals(self) -> Totals:
        return Totals(self.requests, self.errors, self.input_tokens, self.output_tokens, self.cost_nanos,
                      self.user_cost_nanos, self.unpriced)


def _client_group(key_id: str | None, named: tuple[str, str] | None, totals: Totals) -> ClientGroupRow:
    short_id, name = named if named else (None, None)
    return ClientGroupRow(key_id, short_id, name, totals)
