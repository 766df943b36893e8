"""Operator truth over real HTTP against real PostgreSQL: the request log and the overview's
counts (entries recorded through the ``RequestLog`` port, read back from a chat-api process),
the audit log of admin actions, and alerts received by a local webhook listener exactly once
per period — also with two replicas checking at once."""
from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from chat_api.alerting import AlertWatch
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.ledger import write_records
from domain.adapters.sql.request_log import SqlRequestLog
from domain.key_policy import FallbackReason, KeySource
from domain.ledger import UsageRecord
from domain.money import Money
from domain.periods import KST, day_key, day_start
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage
from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import stop


class WebhookListener:
    """A Slack-like incoming webhook: a real HTTP server on loopback recording each POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with listener._cond:
                    listener.received.append(json.loads(body))
                    listener._cond.notify_all()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.received), timeout), self.received
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    """This module's own database: its counts are exact, not "at least"."""
    url = create_database("llm_truth")
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookListener]:
    listener = WebhookListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def api(db_url: str, fake_openai: str, webhook: WebhookListener, tmp_path_factory) -> Iterator[ChatApiProcess]:
    proc, api = start_chat_api(db_url, fake_openai, tmp_path_factory.mktemp("truth"),
                               ALERT_WEBHOOK_URL=webhook.url, ALERT_CHECK_SECONDS="0.2")
    yield api
    stop(proc)


def _admin(api: ChatApiProcess) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.admin_token}"}, timeout=10)


def _ledger_row(request_id: str, key_id: str, at: datetime, source: KeySource, cost: int,
                fallback: FallbackReason | None = None) -> UsageRecord:
    return UsageRecord(request_id=request_id, created_at=at, client_key_id=key_id, route="/v1/chat/completions",
                       model="gpt-4o-mini", usage=TokenUsage(input_tokens=10, output_tokens=5),
                       cost=Money(cost), catalog_version="t", key_source=source, latency_ms=50,
                       fallback_reason=fallback)


def test_request_log_and_overview_count_client_requests(api: ChatApiProcess, db_url: str) -> None:
    """A scripted mix: 200, 400, 402, 429 and an own-key -> server-key fallback (two ledger
    rows, one request). The overview says 5 requests and 3 errors; the ledger has 4 rows."""
    with _admin(api) as admin:
        key = admin.post("/admin/v1/keys", json={"name": "mix"}).json()["item"]
        engine = make_engine(db_url)
        log = SqlRequestLog(engine, batch_size=2)
        log.start()
        now = datetime.now(UTC) - timedelta(seconds=5)
        ok, fb = uuid.uuid4().hex, uuid.uuid4().hex
        write_records(engine, [
            _ledger_row(ok, key["id"], now, KeySource.SERVER, 1_000),
            _ledger_row(f"{fb}:user", key["id"], now, KeySource.USER, 0, FallbackReason.USER_KEY_REJECTED),
            _ledger_row(fb, key["id"], now, KeySource.SERVER, 2_000, FallbackReason.USER_KEY_REJECTED),
        ])
        mix = [
            RequestLogEntry(ok, now, "/v1/chat/completions", 200, key["id"], model="gpt-4o-mini",
                            key_source="server", upstream="default", latency_ms=50, cost=Money(1_000)),
            RequestLogEntry(uuid.uuid4().hex, now + timedelta(milliseconds=1), "/api/v1/chat", 400, key["id"],
                            error_code="invalid_field"),
            RequestLogEntry(uuid.uuid4().hex, now + timedelta(milliseconds=2), "/v1/chat/completions", 402,
                            key["id"], error_code="budget_exceeded", model="gpt-4.1"),
            RequestLogEntry(uuid.uuid4().hex, now + timedelta(milliseconds=3), "/v1/responses", 429, key["id"],
                            error_code="rate_limited"),
            RequestLogEntry(fb, now + timedelta(milliseconds=4), "/v1/chat/completions", 200, key["id"],
                            model="gpt-4o-mini", key_source="server", fallback_reason="user_key_rejected",
                            upstream="default", latency_ms=70, cost=Money(2_000)),
        ]
        for entry in mix:
            log.record(entry)
        log.close()  # writes what is queued
        engine.dispose()
        assert log.written == 5 and log.dropped == 0

        overview = admin.get("/admin/v1/overview").json()
        assert (overview["today"]["requests"], overview["today"]["errors"]) == (5, 3)
        assert (overview["month"]["requests"], overview["month"]["errors"]) == (5, 3)
        assert overview["last_15m"]["requests"] == 5 and overview["last_15m"]["by_class"] == {"2xx": 2, "4xx": 3}
        # money is still the ledger's: 3,000 nano-USD; the refused own-key attempt cost nothing
        assert overview["today"]["cost_usd"] == "0.00000300"

        page = admin.get("/admin/v1/requests", params={"client_key_id": key["id"]}).json()
        assert page["total"] == 5
        assert [i["status"] for i in page["items"]] == [200, 429, 402, 400, 200]  # newest first
        first = page["items"][0]
        assert set(first) >= {"request_id", "created_at", "route", "status", "error_code", "client_key_id", "model",
                              "key_source", "fallback_reason", "upstream", "latency_ms", "cost_usd"}
        assert (first["request_id"], first["fallback_reason"], first["cost_usd"], first["upstream"]) == (
            fb, "user_key_rejected", "0.00000200", "default")
        assert isinstance(first["status"], int) and first["client_name"] == "mix"
        errors = admin.get("/admin/v1/requests", params={"status": "error"}).json()
        assert errors["total"] == 3 and {i["error_code"] for i in errors["items"]} == {
            "invalid_field", "budget_exceeded", "rate_limited"}
        assert admin.get("/admin/v1/requests", params={"status": "402"}).json()["total"] == 1
        assert admin.get("/admin/v1/requests", params={"status": "4xx"}).json()["total"] == 3
        two = admin.get("/admin/v1/requests", params={"page_size": 2, "page": 3}).json()
        assert two["total"] == 5 and len(two["items"]) == 1 and two["items"][0]["request_id"] == ok
        window = admin.get("/admin/v1/requests", params={
            "since": (now + timedelta(milliseconds=2)).isoformat(),
            "until": (now + timedelta(milliseconds=4)).isoformat()}).json()
        assert window["total"] == 2
        detail = admin.get(f"/admin/v1/requests/{fb}").json()
        assert detail["item"]["status"] == 200
        assert admin.get("/admin/v1/requests/nope").json()["detail"]["code"] == "request_not_found"
        # the keys page's "refused today" is the request log's 402s
        listed = next(k for k in admin.get("/admin/v1/keys").json()["items"] if k["id"] == key["id"])
        assert listed["refused_today"] == 1
        overview = admin.get("/admin/v1/overview").json()
        assert key["id"] in {k["id"] for k in overview["budget_risk"]}  # refused today: at risk

        for bad in ({"status": "abc"}, {"status": "99"}, {"status": "6xx"}, {"page_size": 0},
                    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}):
            r = admin.get("/admin/v1/requests", params=bad)
            assert r.status_code in (400, 422) and "code" in r.json()["detail"], bad
        r = admin.get("/admin/v1/requests", params={"status": "abc"}, headers={"Accept-Language": "en"})
        assert r.json()["detail"]["field"] == "status" and "Invalid" in r.json()["detail"]["message"]
        assert httpx.get(api.url + "/admin/v1/requests").status_code == 401

        csv_r = admin.get("/admin/v1/requests.csv", params={"client_key_id": key["id"]})
        lines = csv_r.content.decode("utf-8-sig").splitlines()
        assert csv_r.content.startswith("\ufeff".encode()) and len(lines) == 6
        assert lines[0].startswith("created_at_local,created_at,request_id")


def test_hostile_ids_are_kept_and_neutralised_in_exports(api: ChatApiProcess, db_url: str) -> None:
    hostile = '=HYPERLINK("http://evil.example","x")'
    engine = make_engine(db_url)
    log = SqlRequestLog(engine)
    at = datetime.now(UTC)
    for rid in (hostile, "+1+1", "-2", "@SUM(A1)", "\tx", "\rx", "nul\x00byte" + "z" * 500, "a/b?c#d"):
        log.record(RequestLogEntry(rid, at, "/api/v1/chat", 400, error_code="invalid_field"))
    log.flush()
    engine.dispose()
    with _admin(api) as admin:
        items = admin.get("/admin/v1/requests", params={"status": "400", "page_size": 100}).json()["items"]
        assert hostile in {i["request_id"] for i in items}
        from urllib.parse import quote

        # any id can be opened, slashes and all
        assert admin.get("/admin/v1/requests/" + quote("a/b?c#d", safe="/")).json()["item"]["request_id"] == "a/b?c#d"
        body = admin.get("/admin/v1/requests.csv", params={"status": "400"}).content.decode("utf-8-sig")
    import csv
    import io

    ids = {row["request_id"] for row in csv.DictReader(io.StringIO(body))}
    assert "'" + hostile in ids and "'+1+1" in ids and "'-2" in ids and "'@SUM(A1)" in ids
    assert "'\tx" in ids and "'\rx" in ids
    assert not any(i.startswith(("=", "+", "-", "@", "\t", "\r")) for i in ids)


def test_admin_actions_are_audited(api: ChatApiProcess) -> None:
    with _admin(api) as admin:
        created = admin.post("/admin/v1/keys", json={"name": "감사 대상", "daily_limit_usd": "3"},
                             headers={"X-Admin-Actor": "console:operator"}).json()
        key_id = created["item"]["id"]
        admin.put(f"/admin/v1/keys/{key_id}/budget", json={"daily_limit_usd": "5", "monthly_limit_usd": None})
        admin.post(f"/admin/v1/keys/{key_id}/revoke", headers={"X-Admin-Actor": "ops\tbot"})
        audit = admin.get("/admin/v1/audit").json()
    mine = [a for a in audit["items"] if a["key_id"] == key_id]
    assert [a["action"] for a in mine] == ["key_revoked", "budget_changed", "key_created"]  # newest first
    assert [a["actor"] for a in mine] == ["opsbot", "admin-api", "console:operator"]
    assert mine[1]["detail"]["daily_limit_usd_before"] == "3.00000000" and mine[1]["detail"]["daily_limit_usd"] == "5"
    assert mine[2]["detail"]["name"] == "감사 대상" and all(a["key_name"] == "감사 대상" for a in mine)
    assert created["key"] not in json.dumps(audit)  # the secret is never recorded
    for a in mine:
        assert datetime.fromisoformat(a["at"].replace("Z", "+00:00")) <= datetime.now(UTC)


def test_budget_alerts_reach_the_webhook_once_per_period(api: ChatApiProcess, webhook: WebhookListener,
                                                         db_url: str) -> None:
    """The chat-api process checks every 0.2 s. A key at 90 % of its daily cap alerts once;
    a second key crossing later alerts once too, and the first is not repeated (the process
    re-checked it in the round that sent the second) — not even as the key it was rotated
    into, which carries on the same budget."""
    with _admin(api) as admin:
        first = admin.post("/admin/v1/keys", json={"name": "알림 키 1", "daily_limit_usd": "1"}).json()["item"]
    engine = make_engine(db_url)
    day = day_key(datetime.now(UTC))

    def spend(key_id: str, usd: str) -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO budget_counters (scope, period, spent_nanos, reserved_nanos) "
                              "VALUES (:s, :p, :n, 0) ON CONFLICT (scope, period) DO UPDATE SET spent_nanos = :n"),
                         {"s": f"key:{key_id}", "p": day, "n": Money.from_usd(usd).nanos})

    def budget_alerts(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [a for a in received if a["kind"] == "budget"]

    try:
        spend(first["id"], "0.9")
        got = webhook.wait_for(lambda r: len(budget_alerts(r)) >= 1)
        with _admin(api) as admin:
            successor = admin.post(f"/admin/v1/keys/{first['id']}/rotate").json()["item"]
            # made after the successor, so each round checks the successor first
            second = admin.post("/admin/v1/keys", json={"name": "알림 키 2", "daily_limit_usd": "1"}).json()["item"]
        assert Decimal(successor["spent_today_usd"]) == Decimal("0.9")
        spend(second["id"], "0.95")
        got = webhook.wait_for(lambda r: any(a.get("key_id") == second["id"] for a in r))
    finally:
        engine.dispose()
    alerts = budget_alerts(got)
    assert [a["key_name"] for a in alerts] == ["알림 키 1", "알림 키 2"]
    assert not any(a.get("key_id") == successor["id"] for a in alerts)
    assert alerts[0]["period"] == day and alerts[0]["percent"] == 90 and "알림 키 1" in alerts[0]["text"]
    with _admin(api) as admin:
        listed = admin.get("/admin/v1/alerts").json()["items"]
    assert {a["subject"] for a in listed} >= {f"key:{first['id']}:day", f"key:{second['id']}:day"}
    assert all(a["delivered"] for a in listed)


async def test_replicas_checking_at_once_send_each_alert_once(db_url: str, webhook: WebhookListener,
                                                              api: ChatApiProcess) -> None:
    """Three replicas check at once (the chat-api process every 0.2 s and two watchers here,
    three rounds each) with the 5-minute error rate at 50 %: every (kind, subject, period)
    reaches the webhook once. Two replicas report the same circuit opening: one alert."""
    engine = make_engine(db_url)
    executor = ThreadPoolExecutor(4)
    with engine.begin() as conn:
        since = datetime.now(UTC) - timedelta(seconds=1)
        rows = [{"r": uuid.uuid4().hex, "at": since, "s": 503 if i % 2 else 200} for i in range(20)]
        conn.execute(text("INSERT INTO request_log (request_id, created_at, route, status, latency_ms) "
                          "VALUES (:r, :at, '/v1/chat/completions', :s, 1)"), rows)
    watches = [AlertWatch(engine, executor, lambda: datetime.now(UTC), KST, webhook_url=webhook.url,
                          budget_pct=Decimal(80), error_rate=0.2) for _ in range(2)]
    try:
        await asyncio.gather(*(w.check() for w in watches for _ in range(3)))
        watches[0].circuit_opened("default")
        watches[1].circuit_opened("default")
    finally:
        for w in watches:
            await w.aclose()  # waits for the circuit reports in flight
        executor.shutdown()
    await asyncio.to_thread(webhook.wait_for, lambda r: any(a["kind"] == "circuit" for a in r)
                            and any(a["kind"] == "error_rate" for a in r))
    with engine.connect() as conn:
        claimed = conn.execute(text("SELECT count(*) FROM alerts WHERE kind IN ('error_rate', 'circuit')")).scalar()
    engine.dispose()
    sent = [(a["kind"], a["subject"], a["period"]) for a in webhook.received]
    assert len(sent) == len(set(sent))  # nothing twice
    assert len([s for s in sent if s[0] in ("error_rate", "circuit")]) == claimed
    circuit = [a for a in webhook.received if a["kind"] == "circuit"]
    assert len(circuit) == 1 and circuit[0]["upstream"] == "default" and "default" in circuit[0]["text"]
    rate = next(a for a in webhook.received if a["kind"] == "error_rate")
    assert rate["rate"] > 0.2 and rate["errors"] <= rate["requests"]


def test_today_is_the_korean_day_in_the_api(api: ChatApiProcess, db_url: str) -> None:
    now = datetime.now(UTC)
    with _admin(api) as admin:
        body = admin.get("/admin/v1/overview").json()
    assert body["today_start"] == day_start(now).isoformat().replace("+00:00", "Z")
    assert datetime.fromisoformat(body["today_start"].replace("Z", "+00:00")).astimezone(KST).hour == 0


def test_now_view(api: ChatApiProcess) -> None:
    with _admin(api) as admin:
        body = admin.get("/admin/v1/now").json()
    assert body["requests"] >= body["errors"] >= 0 and body["error_rate_threshold"] == 0.2
    assert set(body["by_class"]) <= {"1xx", "2xx", "3xx", "4xx", "5xx"}


async def test_an_unreachable_webhook_leaves_the_alert_listed_undelivered(db_url: str, api: ChatApiProcess) -> None:
    from tests.support.processes import free_port

    engine = make_engine(db_url)
    executor = ThreadPoolExecutor(2)
    watch = AlertWatch(engine, executor, lambda: datetime.now(UTC), KST,
                       webhook_url=f"http://127.0.0.1:{free_port()}/nobody", budget_pct=Decimal(80), error_rate=0.2)
    try:
        from domain.alerts import circuit_alert

        assert await watch.raise_alert(circuit_alert(upstream="azure-east", now=datetime.now(UTC)))
        assert not await watch.raise_alert(circuit_alert(upstream="azure-east", now=datetime.now(UTC)))
    finally:
        await watch.aclose()
        executor.shutdown()
        engine.dispose()
    with _admin(api) as admin:
        listed = [a for a in admin.get("/admin/v1/alerts").json()["items"] if a["subject"] == "upstream:azure-east"]
    assert len(listed) == 1 and listed[0]["delivered"] is False and listed[0]["kind"] == "circuit"
