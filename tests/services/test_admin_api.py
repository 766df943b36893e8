"""The admin API (/admin/v1) against real PostgreSQL: filters, pagination, totals that
agree with independent SQL, key lifecycle, and who may call it."""
from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from chat_api.app import make_app
from chat_api.bootstrap import Container, bootstrap
from chat_api.settings import ChatApiSettings
from domain.adapters.sql.ledger import write_records
from domain.adapters.sql.request_log import write_entries
from domain.conversations import Turn
from domain.errors import DomainError
from domain.key_policy import KeySource
from domain.ledger import Outcome, UsageRecord
from domain.money import Money
from domain.periods import KST, day_key, day_start, local_date, month_key, month_start
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage

ADMIN = "t" * 32


def _app(container: Container) -> FastAPI:
    """The real app (its routes and error table), with the test's container; the lifespan
    is not run by ASGITransport, so nothing else starts."""
    app = make_app(container=container)
    app.state.container = container
    return app


@pytest.fixture(scope="module")
async def container(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Container]:
    c = bootstrap(ChatApiSettings(database_url=pg_url, admin_token=ADMIN, key_hash_secret="s" * 32,
                                  data_dir=tmp_path_factory.mktemp("admin-api"), usd_krw_rate=Decimal("1400")))
    yield c
    await c.aclose()


@pytest.fixture(scope="module")
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(container)), base_url="http://admin",
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


def _now() -> datetime:
    return datetime.now(UTC)


def _today_ts() -> datetime:
    """A moment safely inside today (the budget time zone's day, Korea) and before now."""
    now = _now()
    start = day_start(now)
    return start + (now - start) / 2


def _logged(r: UsageRecord, status: int | None = None) -> RequestLogEntry:
    """The request-log entry the gateway writes for a ledger row's request."""
    status = status if status is not None else (502 if r.outcome is Outcome.ERROR else 200)
    return RequestLogEntry(request_id=r.request_id, created_at=r.created_at, route=r.route, status=status,
                           client_key_id=r.client_key_id, error_code="upstream_error" if status >= 400 else None,
                           model=r.model, key_source=r.key_source.value, latency_ms=r.latency_ms, cost=r.cost)


def _record(*, key: str | None, at: datetime, model: str = "gpt-4o-mini", conversation: str | None = None,
            prompt: str = "안녕하세요", reply: str = "반갑습니다", source: KeySource = KeySource.SERVER,
            cost: int | None = 1_234_567, outcome: Outcome = Outcome.OK, inp: int = 100, out: int = 50) -> UsageRecord:
    rid = uuid.uuid4().hex
    turn = (Turn(conversation, key, rid, at, "be brief", prompt, reply, model)
            if conversation is not None and outcome is Outcome.OK else None)
    return UsageRecord(request_id=rid, created_at=at, client_key_id=key, route="/api/v1/chat", model=model,
                       usage=TokenUsage(input_tokens=inp, output_tokens=out, cached_input_tokens=10),
                       cost=None if cost is None else Money(cost), catalog_version="test", key_source=source,
                       outcome=outcome, latency_ms=321, conversation_id=conversation, turn=turn)


@pytest.fixture(scope="module")
async def seeded(client: httpx.AsyncClient, container: Container) -> dict[str, Any]:
    """Two keys and a spread of traffic: several days, models, key sources, an error."""
    k1 = (await client.post("/admin/v1/keys", json={"name": "팀 A", "daily_limit_usd": "5"})).json()
    k2 = (await client.post("/admin/v1/keys", json={"name": "team-b"})).json()
    id1, id2 = k1["item"]["id"], k2["item"]["id"]
    tag = uuid.uuid4().hex[:8]
    today, now = _today_ts(), _now()
    records = []
    # 25 conversations for key 1 (for pagination), one turn each, today.
    for i in range(25):
        records.append(_record(key=id1, at=today - timedelta(seconds=25 - i), conversation=f"c{tag}-{i}",
                               prompt=f"질문 {i}", cost=1_000_000 + i))
    # A 3-turn conversation for key 2 with a searchable phrase and mixed models/sources.
    conv = f"deep-{tag}"
    records.append(_record(key=id2, at=today - timedelta(minutes=3), conversation=conv, model="gpt-4.1",
                           prompt=f"서울 날씨 {tag} 알려줘", reply="<b>맑음</b> & 따뜻함"))
    records.append(_record(key=id2, at=today - timedelta(minutes=2), conversation=conv, model="gpt-4o-mini",
                           source=KeySource.USER, prompt="내일은?", reply="비"))
    records.append(_record(key=id2, at=today - timedelta(minutes=1), conversation=conv, model="gpt-4o-mini",
                           prompt="고마워", reply="천만에요"))
    # Older traffic: 3 and 40 days ago; an error and an unpriced row today.
    records.append(_record(key=id2, at=now - timedelta(days=3), model="gpt-4.1", cost=7_000_000_000))
    records.append(_record(key=id2, at=now - timedelta(days=40), model="gpt-4.1", cost=9_000_000_000))
    records.append(_record(key=id1, at=today, outcome=Outcome.ERROR, cost=0, inp=10, out=0))
    records.append(_record(key=None, at=today, model="mystery-model", cost=None))
    write_records(container.engine, records)
    # The request log: one entry per ledger row's request, plus refusals that never reached
    # the ledger (402, 429, 401).
    refusals = [RequestLogEntry(request_id=uuid.uuid4().hex, created_at=today, route="/v1/chat/completions",
                                status=status, client_key_id=id1, error_code=code, model="gpt-4.1")
                for status, code in ((402, "budget_exceeded"), (429, "rate_limited"), (401, "invalid_client_key"))]
    write_entries(container.engine, [_logged(r) for r in records] + refusals)
    day, month = day_key(now), month_key(now)
    with container.engine.begin() as conn:
        for scope, period, spent in ((f"key:{id1}", day, 2_500_000_000), (f"key:{id1}", month, 4_000_000_000)):
            # Storing ledger rows already counted them; pin the counters to known figures.
            conn.execute(text("INSERT INTO budget_counters (scope, period, spent_nanos, reserved_nanos) "
                              "VALUES (:s, :p, :n, 0) ON CONFLICT (scope, period) DO UPDATE SET spent_nanos = :n"),
                         {"s": scope, "p": period, "n": spent})
    return {"k1": k1, "k2": k2, "id1": id1, "id2": id2, "tag": tag, "conv": conv}


def _sql(container: Container, sql: str, **params: Any) -> Any:
    with container.engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def _usd_text(nanos: int) -> str:
    return format(Money(nanos).usd_rounded(8), "f")


# -- authentication ------------------------------------------------------------------------------

async def test_admin_token_required(container: Container, seeded: dict[str, Any]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(container)), base_url="http://admin") as anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {seeded['k1']['key']}"},
                        {"Authorization": ADMIN}):
            r = await anon.get("/admin/v1/keys", headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["detail"]["code"] == "invalid_admin_token"
            assert (await anon.post("/admin/v1/keys", json={"name": "x"}, headers=headers)).status_code == 401


# -- overview --------------------------------------------------------------------------------------

async def test_overview_matches_sql(client: httpx.AsyncClient, container: Container, seeded: dict[str, Any]) -> None:
    now = _now()
    day0, month0 = day_start(now), month_start(now)

    # "today" ends where the next local day begins: other tests of the session write rows dated
    # later (a charge already tomorrow in Seoul), which are not today's. "This month" ends
    # there too: nothing dated after today is counted.
    day1 = day_start(day0 + timedelta(days=1, hours=12))
    month1 = day1

    def logged() -> list[Any]:
        return [(_sql(container, "SELECT count(*) n, count(*) FILTER (WHERE status >= 400) e FROM request_log "
                                 "WHERE created_at >= :s AND created_at < :e", s=start, e=end),
                 _sql(container, "SELECT coalesce(sum(cost_nanos),0) c, coalesce(sum(input_tokens),0) i, "
                                 "coalesce(sum(output_tokens),0) o, "
                                 "coalesce(sum(cost_nanos) FILTER (WHERE key_source='user'),0) u "
                                 "FROM spend_ledger WHERE created_at >= :s AND created_at < :e", s=start, e=end))
                for start, end in ((day0, day1), (month0, month1))]

    # Other chat-api processes of the session share this database and their request-log and
    # ledger writers may add rows at any time: compare against a quiet moment (the same
    # counts and sums before and after the overview was read), retried within a bounded time.
    for _ in range(50):
        before = logged()
        body = (await client.get("/admin/v1/overview")).json()
        if logged() == before:
            break
    else:
        pytest.fail("the request log and ledger never stayed still for one overview read")
    assert body["today_start"] == day0.isoformat().replace("+00:00", "Z") and body["timezone"] == "Asia/Seoul"
    for (name, _start), (log, row) in zip((("today", day0), ("month", month0)), before, strict=True):
        # requests and errors are client requests (the request log, read above), not ledger rows
        got = body[name]
        assert (got["requests"], got["errors"], got["input_tokens"], got["output_tokens"]) == (log.n, log.e, row.i, row.o)
        assert got["cost_usd"] == _usd_text(row.c)
        assert (got["user_cost_usd"], got["server_cost_usd"]) == (_usd_text(row.u), _usd_text(row.c - row.u))
        assert Decimal(got["cost_krw"]) == (Decimal(row.c) / 10**9 * 1400).quantize(Decimal("0.01"))
    assert body["today"]["errors"] >= 4  # the three refusals and the upstream error, at least
    assert body["usd_krw_rate"] == "1400"
    assert len(body["by_day"]) == 30 and body["by_day"][-1]["day"] == local_date(now)
    three = local_date(now - timedelta(days=3))
    row = _sql(container, "SELECT coalesce(sum(cost_nanos),0) c FROM spend_ledger "
                          "WHERE to_char(created_at AT TIME ZONE 'Asia/Seoul','YYYY-MM-DD') = :d", d=three)
    log = _sql(container, "SELECT count(*) n FROM request_log "
                          "WHERE to_char(created_at AT TIME ZONE 'Asia/Seoul','YYYY-MM-DD') = :d", d=three)
    day = next(d for d in body["by_day"] if d["day"] == three)
    assert (day["requests"], day["cost_usd"]) == (log.n, _usd_text(row.c))
    assert any(m["model"] == "gpt-4o-mini" for m in body["top_models"])
    named = {c["client_key_id"]: c for c in body["top_clients"]}
    if seeded["id2"] in named:
        assert named[seeded["id2"]]["name"] == "team-b"
        assert named[seeded["id2"]]["short_id"] == seeded["k2"]["item"]["short_id"]


# -- conversations -------------------------------------------------------------------------------

async def test_conversations_pagination_and_filters(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    id1 = seeded["id1"]
    p1 = (await client.get("/admin/v1/conversations", params={"client_key_id": id1, "page_size": 10})).json()
    assert p1["total"] == 25 and p1["page"] == 1 and p1["page_size"] == 10 and len(p1["items"]) == 10
    p3 = (await client.get("/admin/v1/conversations", params={"client_key_id": id1, "page_size": 10,
                                                              "page": 3})).json()
    assert len(p3["items"]) == 5 and p3["total"] == 25
    seen = [c["id"] for c in p1["items"]]
    assert len(set(seen)) == 10
    newest = p1["items"][0]
    assert newest["external_id"].endswith("-24")  # newest first
    assert newest["owner"] == id1 and newest["owner_short_id"] == seeded["k1"]["item"]["short_id"]
    assert newest["turn_count"] == 1 and newest["last_model"] == "gpt-4o-mini"
    assert newest["cost_usd"] == _usd_text(1_000_024)

    found = (await client.get("/admin/v1/conversations", params={"q": f"날씨 {seeded['tag']}"})).json()
    assert [c["external_id"] for c in found["items"]] == [seeded["conv"]] and found["total"] == 1
    # text search is case-insensitive; LIKE wildcards in q are literal
    assert (await client.get("/admin/v1/conversations", params={"q": f"날씨_{seeded['tag']}"})).json()["total"] == 0
    assert (await client.get("/admin/v1/conversations",
                             params={"q": seeded["tag"].upper()})).json()["total"] == 1

    user = (await client.get("/admin/v1/conversations", params={"key_source": "user",
                                                                "client_key_id": seeded["id2"]})).json()
    assert [c["external_id"] for c in user["items"]] == [seeded["conv"]]
    assert (await client.get("/admin/v1/conversations", params={"key_source": "user",
                                                                "client_key_id": id1})).json()["total"] == 0
    by_model = (await client.get("/admin/v1/conversations", params={"model": "gpt-4.1",
                                                                    "client_key_id": seeded["id2"]})).json()
    assert by_model["total"] == 1
    future = (_now() + timedelta(days=1)).isoformat()
    assert (await client.get("/admin/v1/conversations", params={"since": future})).json()["total"] == 0
    past = (await client.get("/admin/v1/conversations", params={"until": (_now() - timedelta(days=2)).isoformat(),
                                                                "client_key_id": id1})).json()
    assert past["total"] == 0
    bad = await client.get("/admin/v1/conversations", params={"since": future, "until": _now().isoformat()})
    assert bad.status_code == 400 and bad.json()["detail"]["code"] == "invalid_time_range"
    assert (await client.get("/admin/v1/conversations", params={"page_size": 1000})).status_code == 422
    assert (await client.get("/admin/v1/conversations", params={"key_source": "other"})).status_code == 422
    refused = await client.get("/admin/v1/conversations", params={"page_size": 1000}, headers={"Accept-Language": "en"})
    assert refused.json()["detail"]["code"] == "invalid_field" and refused.json()["detail"]["field"] == "page_size"


async def test_conversation_turns(client: httpx.AsyncClient, container: Container, seeded: dict[str, Any]) -> None:
    listing = (await client.get("/admin/v1/conversations", params={"q": seeded["tag"], "client_key_id": seeded["id2"]}))
    conv = listing.json()["items"][0]
    body = (await client.get(f"/admin/v1/conversations/{conv['id']}/turns")).json()
    assert body["conversation"]["id"] == conv["id"] and body["conversation"]["turn_count"] == 3
    turns = body["turns"]
    assert [t["turn_index"] for t in turns] == [1, 2, 3]
    assert turns[0]["reply"] == "<b>맑음</b> & 따뜻함"  # stored and returned verbatim; the console escapes
    assert [t["model"] for t in turns] == ["gpt-4.1", "gpt-4o-mini", "gpt-4o-mini"]
    assert [t["key_source"] for t in turns] == ["server", "user", "server"]
    t0 = turns[0]
    assert (t0["input_tokens"], t0["cached_input_tokens"], t0["output_tokens"], t0["latency_ms"]) == (100, 10, 50, 321)
    assert t0["cost_usd"] == "0.00123457" and t0["cost_krw"] == "1.73" and t0["system_prompt"] == "be brief"
    total = _sql(container, "SELECT sum(cost_nanos) c FROM spend_ledger WHERE conversation_id = :i", i=conv["id"]).c
    assert body["conversation"]["cost_usd"] == _usd_text(total)
    missing = await client.get("/admin/v1/conversations/999999999/turns")
    assert missing.status_code == 404 and missing.json()["detail"]["code"] == "conversation_not_found"


# -- spend -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("group_by", ["day", "model", "key_source", "client_key"])
async def test_spend_groups_sum_to_sql(client: httpx.AsyncClient, container: Container, seeded: dict[str, Any],
                                       group_by: str) -> None:
    since = (_now() - timedelta(days=30)).isoformat()
    body = (await client.get("/admin/v1/spend", params={"group_by": group_by, "since": since})).json()
    row = _sql(container, "SELECT count(*) n, coalesce(sum(cost_nanos),0) c, coalesce(sum(output_tokens),0) o "
                          "FROM spend_ledger WHERE created_at >= :s", s=datetime.fromisoformat(since))
    assert body["group_by"] == group_by
    assert (body["total"]["requests"], body["total"]["cost_usd"], body["total"]["output_tokens"]) == (
        row.n, _usd_text(row.c), row.o)
    assert sum(r["requests"] for r in body["rows"]) == row.n
    assert sum(Decimal(r["cost_usd"]) for r in body["rows"]) == Decimal(_usd_text(row.c))
    keys = [r["key"] for r in body["rows"]]
    if group_by == "day":
        assert keys == sorted(keys)
    if group_by == "client_key":
        labels = {r["key"]: r["label"] for r in body["rows"]}
        assert labels[seeded["id2"]] == f"team-b ({seeded['k2']['item']['short_id']})"
    if group_by == "key_source":
        assert set(keys) <= {"server", "user"}


async def test_spend_filters(client: httpx.AsyncClient, container: Container, seeded: dict[str, Any]) -> None:
    id2 = seeded["id2"]
    body = (await client.get("/admin/v1/spend", params={"group_by": "model", "client_key_id": id2})).json()
    row = _sql(container, "SELECT count(*) n, sum(cost_nanos) c FROM spend_ledger WHERE client_key_id = :k", k=id2)
    assert body["total"]["requests"] == row.n == 5 and body["total"]["cost_usd"] == _usd_text(row.c)
    assert {r["key"]: r["requests"] for r in body["rows"]} == {"gpt-4.1": 3, "gpt-4o-mini": 2}
    only = (await client.get("/admin/v1/spend", params={"group_by": "day", "client_key_id": id2, "model": "gpt-4.1",
                                                        "since": (_now() - timedelta(days=7)).isoformat()})).json()
    assert only["total"]["requests"] == 2
    user = (await client.get("/admin/v1/spend", params={"group_by": "key_source", "client_key_id": id2,
                                                        "key_source": "user"})).json()
    assert [r["key"] for r in user["rows"]] == ["user"] and user["total"]["requests"] == 1


async def test_ledger_csv(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    since = (_now() - timedelta(days=60)).replace(microsecond=0)
    r = await client.get("/admin/v1/spend/ledger.csv", params={"client_key_id": seeded["id2"],
                                                               "since": since.isoformat()})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    # the file is named after its range, in KST
    assert "attachment" in disposition and f"ledger_{since.astimezone(KST):%Y%m%d-%H%M}_" in disposition
    assert r.content.startswith("\ufeff".encode())  # a BOM, so Excel reads the UTF-8 names
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 5 and {row["client_key_id"] for row in rows} == {seeded["id2"]}
    assert {row["client_key_name"] for row in rows} == {"team-b"}
    assert [row["created_at"] for row in rows] == sorted((row["created_at"] for row in rows), reverse=True)
    assert rows[-1]["cost_usd"] == "9.00000000" and rows[-1]["cost_krw"] == "12600.00"
    at = datetime.fromisoformat(rows[0]["created_at"])
    assert rows[0]["created_at_local"] == at.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S")
    capped = await client.get("/admin/v1/spend/ledger.csv", params={"client_key_id": seeded["id1"], "limit": 7})
    assert capped.headers["x-row-limit"] == "7"
    assert len(list(csv.DictReader(io.StringIO(capped.content.decode("utf-8-sig"))))) == 7
    assert (await client.get("/admin/v1/spend/ledger.csv", params={"limit": 0})).status_code == 422


# -- keys ------------------------------------------------------------------------------------------

async def test_key_created_once_and_never_listed(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    created = await client.post("/admin/v1/keys", json={"name": "once", "monthly_limit_usd": "12.5",
                                                        "may_use_server_key": False})
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith("llms-") and len(secret) > 30
    item = body["item"]
    assert item["monthly_limit_usd"] == "12.50000000" and item["daily_limit_usd"] is None
    assert item["may_use_server_key"] is False and item["revoked_at"] is None
    assert (item["spent_today_usd"], item["spent_month_usd"]) == ("0.00000000", "0.00000000")
    assert secret.startswith("llms-" + item["short_id"])
    listing = await client.get("/admin/v1/keys")
    assert secret not in listing.text and "key_hash" not in listing.text
    ids = [k["id"] for k in listing.json()["items"]]
    assert item["id"] in ids and seeded["id1"] in ids
    k1 = next(k for k in listing.json()["items"] if k["id"] == seeded["id1"])
    assert (k1["spent_today_usd"], k1["spent_month_usd"], k1["daily_limit_usd"]) == (
        "2.50000000", "4.00000000", "5.00000000")


async def test_key_body_validation(client: httpx.AsyncClient) -> None:
    for body in ({"name": ""}, {"name": "x", "daily_limit_usd": "-1"}, {"name": "x", "extra": 1},
                 {"name": "x", "daily_limit_usd": "abc"}, {}):
        assert (await client.post("/admin/v1/keys", json=body)).status_code in (400, 422), body
    assert (await client.put("/admin/v1/keys/nope/budget", json={"daily_limit_usd": "1",
                                                                 "monthly_limit_usd": None})).status_code == 404


async def test_budget_and_revoke(client: httpx.AsyncClient, container: Container) -> None:
    created = (await client.post("/admin/v1/keys", json={"name": "to-revoke"})).json()
    key_id, secret = created["item"]["id"], created["key"]
    assert (await container.authenticate.execute(secret)).key_id == key_id  # now cached
    r = await client.put(f"/admin/v1/keys/{key_id}/budget", json={"daily_limit_usd": "1.5", "monthly_limit_usd": None})
    assert r.status_code == 200
    assert (r.json()["item"]["daily_limit_usd"], r.json()["item"]["monthly_limit_usd"]) == ("1.50000000", None)
    assert (await client.put(f"/admin/v1/keys/{key_id}/budget", json={"daily_limit_usd": "1"})).status_code == 422
    r = await client.post(f"/admin/v1/keys/{key_id}/revoke")
    assert r.status_code == 200 and r.json()["item"]["revoked_at"] is not None
    with pytest.raises(DomainError) as refused:  # the cache was invalidated: refused at once
        await container.authenticate.execute(secret)
    assert refused.value.code == "client_key_revoked"
    assert (await client.post("/admin/v1/keys/does-not-exist/revoke")).status_code == 404


async def test_prices(client: httpx.AsyncClient, container: Container) -> None:
    body = (await client.get("/admin/v1/prices")).json()
    assert body["version"] == container.prices.version
    mini = next(m for m in body["models"] if m["model"] == "gpt-4o-mini")
    assert (mini["input"], mini["output"]) == (str(container.prices.prices["gpt-4o-mini"].input),
                                               str(container.prices.prices["gpt-4o-mini"].output))


def test_read_models_on_sqlite(sqlite_url: str) -> None:
    """The embedded default runs the same read models (its own overview path)."""
    from chat_api.admin.csv_export import ledger_csv
    from domain.adapters.sql.database import make_engine
    from domain.adapters.sql.read_models.conversations import ConversationFilter, conversation_turns, conversations
    from domain.adapters.sql.read_models.overview import overview
    from domain.adapters.sql.read_models.shared import LedgerFilter
    from domain.adapters.sql.read_models.spend import spend

    engine = make_engine(sqlite_url)
    try:
        now, today = _now(), _today_ts()
        write_records(engine, [
            _record(key=None, at=today, conversation="s1", prompt="SQLite 안녕", cost=2_000_000_000),
            _record(key=None, at=now - timedelta(days=2), conversation="s1", model="gpt-4.1", cost=1_000_000_000),
            _record(key=None, at=today, outcome=Outcome.ERROR, cost=0)])
        write_entries(engine, [
            RequestLogEntry(uuid.uuid4().hex, today, "/api/v1/chat", 200),
            RequestLogEntry(uuid.uuid4().hex, now - timedelta(days=2), "/api/v1/chat", 200),
            RequestLogEntry(uuid.uuid4().hex, today, "/api/v1/chat", 502)])
        ov = overview(engine, now)
        assert ov.today.requests == 2 and ov.today.errors == 1 and ov.today.cost_nanos == 2_000_000_000
        assert sum(d.totals.requests for d in ov.by_day) == 3 and ov.by_day[-1].key == local_date(now)
        rows, total = spend(engine, "day", LedgerFilter(since=now - timedelta(days=7)))
        assert total.cost_nanos == 3_000_000_000 and [r.key for r in rows] == sorted(r.key for r in rows)
        page = conversations(engine, ConversationFilter(q="sqlite"))
        assert page.total == 1 and page.items[0].turn_count == 2 and page.items[0].last_model == "gpt-4.1"
        detail = conversation_turns(engine, page.items[0].id)
        assert detail is not None and [t.prompt for t in detail.turns][0] == "SQLite 안녕"
        assert "".join(ledger_csv(engine, LedgerFilter(), limit=2)).count("\n") == 3
        # the SQLite day of a row is its Korean day too (00:30 KST is still the previous UTC day)
        late = day_start(now) + timedelta(minutes=30)
        write_entries(engine, [RequestLogEntry(uuid.uuid4().hex, late, "/api/v1/chat", 200)])
        if late <= now:
            assert overview(engine, now).today.requests == 3
    finally:
        engine.dispose()


async def test_pii_counts_default_to_the_budget_time_zones_month(pg_url: str,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without since/until, /admin/v1/pii reads the current month of BUDGET_TIMEZONE, not Korea's:
    at UTC-10 the month starts 19 hours later than in Seoul."""
    honolulu = bootstrap(ChatApiSettings(database_url=pg_url, admin_token=ADMIN, key_hash_secret="s" * 32,
                                         data_dir=tmp_path_factory.mktemp("admin-api-tz"),
                                         budget_timezone="Pacific/Honolulu"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(honolulu)), base_url="http://admin",
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            answer = (await c.get("/admin/v1/pii")).json()
        expected = month_start(_now(), honolulu.settings.tz)
        assert datetime.fromisoformat(answer["since"].replace("Z", "+00:00")) == expected
        assert expected != month_start(_now(), KST)
    finally:
        await honolulu.aclose()
