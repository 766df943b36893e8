"""The Streamlit console, driven by AppTest from its entrypoint, against a fake admin API
and monitor served over real HTTP on loopback (canned data shaped like docs/admin-api.md)."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from streamlit.testing.v1 import AppTest

import admin_ui
from tests.support.processes import free_port

ENTRY = Path(admin_ui.__file__).with_name("streamlit_app.py")
TOKEN = "admin-token-" + "x" * 24
PASSWORD = "correct horse battery staple"
SECRET = "llms-NEWKEYabcdefghijklmnopqrstuvwxyz0123456789"
HOSTILE_REPLY = "<script>alert('x')</script> **굵게** ![img](http://tracker.invalid/p.png)"
HOSTILE_ID = '=HYPERLINK("http://evil.example/login","x")\n# www.evil-phish.example/login'



class FakeAdmin:
    """A fake chat_api admin API + monitor: canned answers, and a log of every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        self.log = [
            {"request_id": f"req-{i}", "created_at": (now - timedelta(minutes=i)).isoformat(),
             "route": "/v1/chat/completions", "status": (200, 402, 429, 502)[i % 4],
             "error_code": (None, "budget_exceeded", "rate_limited", "upstream_error")[i % 4],
             "client_key_id": "k1", "model": "gpt-4o-mini", "key_source": "server",
             "fallback_reason": "user_key_rejected" if i == 4 else None, "upstream": "default",
             "latency_ms": 100 + i, "cost_usd": "0.00100000" if i % 4 == 0 else None,
             "cost_krw": "1.40" if i % 4 == 0 else None, "client_name": "팀 알파", "client_short_id": "ab12cd34"}
            for i in range(60)]
        self.log[0]["request_id"] = HOSTILE_ID
        self.now: dict[str, Any] = {"requests": 40, "errors": 2, "by_class": {"2xx": 38, "5xx": 2}}
        self.keys: list[dict[str, Any]] = [
            self._key("k1", "ab12cd34", "팀 알파", now - timedelta(days=9), daily="5.00000000",
                      spent_today="2.50000000", spent_month="30.00000000", monthly="100.00000000"),
            self._key("k2", "ef56gh78", "beta", now - timedelta(days=2)),
        ]
        self.conversations = [
            {"id": 1000 + i, "external_id": f"session-{i}", "owner": "k1", "owner_short_id": "ab12cd34",
             "owner_name": "팀 알파", "turn_count": 2, "created_at": (now - timedelta(hours=i + 1)).isoformat(),
             "updated_at": (now - timedelta(hours=i)).isoformat(), "last_model": "gpt-4o-mini",
             "cost_usd": "0.00123400", "cost_krw": "1.73"} for i in range(45)]

    @staticmethod
    def _key(kid: str, short: str, name: str, created: datetime, *, daily: str | None = None,
             monthly: str | None = None, spent_today: str = "0.00000000", spent_month: str = "0.00000000") -> dict:
        pcts = [float(s) * 100 / float(c) for s, c in ((spent_today, daily), (spent_month, monthly)) if c]
        return {"id": kid, "short_id": short, "name": name, "created_at": created.isoformat(), "revoked_at": None,
                "daily_limit_usd": daily, "monthly_limit_usd": monthly, "may_use_server_key": True,
                "spent_today_usd": spent_today, "spent_month_usd": spent_month, "held_today_usd": "0.00000000",
                "held_month_usd": "0.00000000", "refused_today": 0, "pii_policy": None, "expires_at": None,
                "last_used_at": (created + timedelta(hours=1)).isoformat() if kid == "k1" else None,
                "utilisation_pct": round(max(pcts), 1) if pcts else None}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            body = await request.body()
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "params": dict(request.query_params), "body": body.decode() or None,
                                  "auth": request.headers.get("authorization")})
            if request.url.path.startswith("/admin/") and request.headers.get("authorization") != f"Bearer {TOKEN}":
                return JSONResponse({"detail": {"code": "invalid_admin_token", "message": "no"}}, status_code=401)
            return await call_next(request)

        totals = {"requests": 1234, "errors": 12, "input_tokens": 456_789, "output_tokens": 123_456,
                  "cost_usd": "12.34567890", "cost_krw": "17283.95", "server_cost_usd": "10.00000000",
                  "server_cost_krw": "14000.00", "user_cost_usd": "2.34567890", "user_cost_krw": "3283.95",
                  "unpriced_requests": 3}
        today = datetime.now(UTC).date()

        @app.get("/admin/v1/overview")
        def overview() -> dict:
            risk = [k for k in self.keys if (k.get("utilisation_pct") or 0) >= 80 or k.get("refused_today")]
            return {"usd_krw_rate": "1400", "today": totals, "timezone": "Asia/Seoul", "budget_risk": risk,
                    "last_15m": {"requests": 40, "errors": 10, "by_class": {"2xx": 30, "4xx": 6, "5xx": 4},
                                 "p50_ms": 420, "p95_ms": 2100, "ttft_p50_ms": 180, "ttft_p95_ms": 650,
                                 "streams": 12},
                    "month": {**totals, "requests": 40_000, "cost_usd": "321.00000000", "cost_krw": "449400.00"},
                    "top_models": [{"model": "gpt-4o-mini", "requests": 900, "cost_usd": "10.00000000",
                                    "cost_krw": "14000.00"},
                                   {"model": "my-finetune", "requests": 7, "cost_usd": None, "cost_krw": None,
                                    "unpriced_requests": 7}],
                    "top_clients": [{"client_key_id": "k1", "short_id": "ab12cd34", "name": "팀 알파", "requests": 800,
                                     "cost_usd": "9.00000000", "cost_krw": "12600.00"},
                                    {"client_key_id": None, "short_id": None, "name": None, "requests": 5,
                                     "cost_usd": "0.00100000", "cost_krw": "1.40"}],
                    "by_day": [{"day": (today - timedelta(days=29 - i)).isoformat(), "requests": i,
                                "cost_usd": f"{i}.00000000", "cost_krw": f"{i * 1400}.00"} for i in range(30)]}

        @app.get("/admin/v1/conversations")
        def conversations(page: int = 1, page_size: int = 20) -> dict:
            start = (page - 1) * page_size
            return {"items": self.conversations[start:start + page_size], "total": len(self.conversations),
                    "page": page, "page_size": page_size}

        @app.get("/admin/v1/conversations/{cid}/turns")
        def turns(cid: int) -> dict:
            conv = next(c for c in self.conversations if c["id"] == cid)
            now = datetime.now(UTC)
            return {"conversation": conv, "turns": [
                {"turn_index": 1, "created_at": now.isoformat(), "request_id": "req-4", "system_prompt": "간결하게",
                 "prompt": "서울 날씨 알려줘", "reply": HOSTILE_REPLY, "model": "gpt-4o-mini", "input_tokens": 1200,
                 "cached_input_tokens": 100, "output_tokens": 80, "reasoning_tokens": 0, "cost_usd": "0.00023000",
                 "cost_krw": "0.32", "latency_ms": 812, "key_source": "server", "estimated": False},
                {"turn_index": 2, "created_at": now.isoformat(), "request_id": "r2", "system_prompt": "",
                 "prompt": "고마워", "reply": "천만에요", "model": "gpt-4o-mini", "input_tokens": 30,
                 "cached_input_tokens": 0, "output_tokens": 5, "reasoning_tokens": 0, "cost_usd": "0.00000750",
                 "cost_krw": "0.01", "latency_ms": 300, "key_source": "user", "estimated": True}]}

        @app.get("/admin/v1/spend")
        def spend(group_by: str = "day") -> dict:
            rows = {"day": [("2026-11-20", "2026-11-20"), ("2026-11-21", "2026-11-21")],
                    "model": [("gpt-4o-mini", "gpt-4o-mini"), ("gpt-4.1", "gpt-4.1")],
                    "key_source": [("server", "server"), ("user", "user")],
                    "client_key": [("k1", "팀 알파 (ab12cd34)"), ("", "anonymous")]}[group_by]
            return {"group_by": group_by, "total": totals, "rows": [
                {"key": k, "label": label, "requests": 10, "input_tokens": 1000, "output_tokens": 100,
                 "cost_usd": "1.50000000", "cost_krw": "2100.00"} for k, label in rows]}

        @app.get("/admin/v1/spend/ledger.csv")
        def ledger() -> PlainTextResponse:
            return PlainTextResponse("created_at,request_id,cost_usd\n2026-11-20T00:00:00Z,r1,0.1\n",
                                     media_type="text/csv")

        @app.get("/admin/v1/keys")
        def keys() -> dict:
            return {"items": self.keys}

        @app.get("/admin/v1/timeseries")
        def timeseries(hours: int = 24) -> dict:
            top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            return {"hours": hours, "bucket_minutes": 60, "buckets": [
                {"start": (top - timedelta(hours=hours - 1 - i)).isoformat(), "requests": 10 + i,
                 "errors": i % 3, "by_class": {"2xx": 10 + i - i % 3, **({"4xx": i % 3} if i % 3 else {})},
                 "p50_ms": 300 + i, "p95_ms": 900 + 10 * i, "ttft_p50_ms": 150, "ttft_p95_ms": 400, "streams": 2,
                 "cost_usd": f"0.{i:02d}000000", "cost_krw": f"{i * 14}.00", "unpriced_requests": 0}
                for i in range(hours)]}

        @app.get("/admin/v1/pii")
        def pii(client_key_id: str | None = None) -> dict:
            by_key = [{"client_key_id": "k1", "short_id": "ab12cd34", "name": "팀 알파",
                       "counts": {"phone": 7, "rrn": 2, "email": 1}, "blocked": {"card": 3}}]
            if client_key_id is not None:
                by_key = [k for k in by_key if k["client_key_id"] == client_key_id]
            total: dict[str, int] = {}
            for k in by_key:
                for kind, n in k["counts"].items():
                    total[kind] = total.get(kind, 0) + n
            blocked: dict[str, int] = {}
            for k in by_key:
                for kind, n in k["blocked"].items():
                    blocked[kind] = blocked.get(kind, 0) + n
            return {"since": None, "until": None, "total": total, "blocked": blocked, "by_key": by_key}

        @app.put("/admin/v1/keys/{kid}/pii-policy")
        async def pii_policy(kid: str, request: Request) -> dict:
            item = next(k for k in self.keys if k["id"] == kid)
            item["pii_policy"] = (await request.json())["pii_policy"]
            return {"item": item}

        @app.get("/admin/v1/now")
        def now_view() -> dict:
            return {**self.now, "error_rate_threshold": 0.2}

        @app.get("/admin/v1/requests")
        def requests(page: int = 1, page_size: int = 50, status: str | None = None) -> dict:
            rows = [r for r in self.log if status is None or str(r["status"]) == status
                    or (status == "error" and r["status"] >= 400)]
            start = (page - 1) * page_size
            return {"items": rows[start:start + page_size], "total": len(rows), "page": page, "page_size": page_size}

        @app.get("/admin/v1/requests.csv")
        def requests_csv(limit: int = 100_000) -> PlainTextResponse:
            body = "\ufeffcreated_at_local,created_at,request_id\r\n" + "".join(
                f"2026-11-30 10:00:00,2026-11-30T01:00:{i % 60:02d}+00:00,r{i}\r\n" for i in range(min(limit, 3)))
            return PlainTextResponse(body, media_type="text/csv")

        @app.get("/admin/v1/requests/{rid:path}")
        def request_detail(rid: str) -> Any:
            found = next((r for r in self.log if r["request_id"] == rid), None)
            if found is None:
                return JSONResponse({"detail": {"code": "request_not_found", "message": "x"}}, status_code=404)
            return {"item": found, "conversation_id": 1000 if rid == "req-4" else None}

        @app.get("/admin/v1/audit")
        def audit() -> dict:
            return {"items": [{"at": datetime.now(UTC).isoformat(), "actor": "console", "action": "budget_changed",
                               "key_id": "k1", "key_name": "팀 알파", "key_short_id": "ab12cd34",
                               "detail": {"name": "팀 알파", "daily_limit_usd_before": "5.00000000",
                                          "daily_limit_usd": "7.25"}}], "total": 1, "page": 1, "page_size": 50}

        @app.get("/admin/v1/alerts")
        def alerts() -> dict:
            return {"items": [{"kind": "budget", "subject": "key:k1:day", "period": "d:2026-11-30",
                               "created_at": datetime.now(UTC).isoformat(), "delivered": True,
                               "text": "[예산] 클라이언트 키 '팀 알파'이(가) 일일 예산의 80%를 사용했습니다"}]}

        @app.post("/admin/v1/keys", status_code=201)
        async def create_key(request: Request) -> dict:
            body = await request.json()
            item = self._key(f"k{len(self.keys) + 1}", "NEWKEYab", body["name"], datetime.now(UTC),
                             daily=body.get("daily_limit_usd"), monthly=body.get("monthly_limit_usd"))
            self.keys.append(item)
            return {"key": SECRET, "item": item}

        @app.post("/admin/v1/keys/{kid}/revoke")
        def revoke(kid: str) -> dict:
            item = next(k for k in self.keys if k["id"] == kid)
            item["revoked_at"] = datetime.now(UTC).isoformat()
            return {"item": item}

        @app.put("/admin/v1/keys/{kid}/expiry")
        async def expiry(kid: str, request: Request) -> dict:
            item = next(k for k in self.keys if k["id"] == kid)
            item["expires_at"] = (await request.json())["expires_at"]
            return {"item": item}

        @app.post("/admin/v1/keys/{kid}/rotate", status_code=201)
        def rotate(kid: str) -> dict:
            old = next(k for k in self.keys if k["id"] == kid)
            old["revoked_at"] = datetime.now(UTC).isoformat()
            new = {**old, "id": f"k{len(self.keys) + 1}", "short_id": "ROTATEDx", "revoked_at": None}
            self.keys.append(new)
            return {"key": SECRET, "item": new, "previous": old}

        @app.put("/admin/v1/keys/{kid}/budget")
        async def budget(kid: str, request: Request) -> dict:
            body = await request.json()
            item = next(k for k in self.keys if k["id"] == kid)
            item.update(body)
            return {"item": item}

        @app.get("/admin/v1/prices")
        def prices() -> dict:
            return {"version": "2026-11-01", "models": [
                {"model": "gpt-4o-mini", "input": "0.15", "cached_input": "0.075", "output": "0.6",
                 "max_output_tokens": 16384},
                {"model": "gpt-4.1", "input": "2", "cached_input": "0.5", "output": "8", "max_output_tokens": 32768}],
                "extra_models": ["my-finetune"]}

        @app.get("/admin/v1/upstreams")
        def upstreams() -> dict:
            return {"items": [
                {"name": "azure-kc", "kind": "azure", "priority": 0, "weight": 1.0, "accepts_user_keys": False,
                 "models": ["gpt-4o-mini"], "circuit": "open", "cooldown_seconds": 7.5, "consecutive_failures": 3},
                {"name": "openai", "kind": "openai", "priority": 1, "weight": 1.0, "accepts_user_keys": True,
                 "models": ["gpt-4o-mini"], "circuit": "closed", "cooldown_seconds": 0.0,
                 "consecutive_failures": 0}]}

        @app.get("/api/v1/system/info")
        def info() -> dict:
            return {"timestamp": datetime.now(UTC).isoformat(),
                    "cpu": {"total_cores": 2, "total_cpu_usage": 37.5, "cpu_usage_per_core": [30.0, 45.0]},
                    "memory": {"total_bytes": 8 * 1024**3, "used_bytes": 3 * 1024**3, "percentage": 37.5},
                    "disk": {"total_bytes": 100 * 1024**3, "used_bytes": 40 * 1024**3, "percentage": 40.0},
                    "network": {"bytes_sent": 123_456_789, "bytes_recv": 987_654_321}}

        @app.get("/api/v1/system/health")
        def health() -> dict:
            return {"status": "healthy", "service": "LLM Server", "timestamp": datetime.now(UTC).isoformat()}

        @app.get("/healthz")
        def healthz() -> dict:
            return {"status": "ok"}

        @app.get("/readyz")
        def readyz() -> JSONResponse:
            return JSONResponse({"status": "not ready"}, status_code=503)

        return app

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeAdmin, str]]:
    state = FakeAdmin()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(state.app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield state, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def env(fake: tuple[FakeAdmin, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAdmin:
    state, url = fake
    monkeypatch.setenv("CHAT_API_URL", url)
    monkeypatch.setenv("MONITOR_URL", url)
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADMIN_TZ", "Asia/Seoul")
    state.requests.clear()
    return state


def _walk(node: Any) -> Iterator[Any]:
    yield node
    children = getattr(node, "children", None) or {}
    for child in children.values():
        yield from _walk(child)


def page_text(at: AppTest) -> str:
    """Everything the app rendered, as text (proto dumps, so dataframes' cells are included)."""
    parts = []
    for node in _walk(at._tree):
        if type(node).__name__ == "Dataframe":
            parts.append(node.value.to_csv())
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
    return "\n".join(parts)


def _frames(at: AppTest) -> list[str]:
    """The documents of the app's component frames (st.iframe with HTML)."""
    out = []
    for node in _walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is not None and "createObjectURL" in str(proto) or (proto is not None and "cookie" in str(proto)):
            out.append(str(proto))
    return out


def signed_in_app() -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    at.text_input(key="signin_password").input(PASSWORD)
    at.button(key="signin_submit").click().run()
    assert not at.exception, at.exception
    return at


def test_wrong_password_shows_error_and_no_data(env: FakeAdmin) -> None:
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    assert at.title[0].value == "관리자 로그인"
    at.text_input(key="signin_password").input("guess")
    at.button(key="signin_submit").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["비밀번호가 올바르지 않습니다."]
    assert not at.metric and not at.dataframe
    assert not [r for r in env.requests if r["path"].startswith("/admin/")]
    assert PASSWORD not in page_text(at) and "guess" not in page_text(at)


def test_repeated_failures_lock_the_session(env: FakeAdmin) -> None:
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    for _ in range(3):
        at.text_input(key="signin_password").input("nope")
        at.button(key="signin_submit").click().run()
    assert "너무 많습니다" in at.error[0].value
    # even the right password is refused while locked
    at.text_input(key="signin_password").input(PASSWORD)
    at.button(key="signin_submit").click().run()
    assert "너무 많습니다" in at.error[0].value and not at.metric


def test_right_password_shows_overview(env: FakeAdmin) -> None:
    at = signed_in_app()
    assert at.title[0].value == "개요"
    values = [m.value for m in at.metric]
    assert "₩14,000" in values and "₩3,284" in values and "1,234" in values and "40,000" in values
    assert "1.0%" in values  # error rate 12 / 1234
    text = page_text(at)
    assert "팀 알파 (ab12cd34)" in text and "gpt-4o-mini" in text
    assert TOKEN not in text and PASSWORD not in text
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in env.requests if r["path"].startswith("/admin/"))


@pytest.mark.parametrize("page", ["overview", "requests", "conversations", "spend", "keys", "audit", "host", "prices"])
def test_each_page_renders(env: FakeAdmin, page: str) -> None:
    at = signed_in_app()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert TOKEN not in page_text(at)


def test_host_shows_each_upstreams_health(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/host.py").run()
    assert not at.exception, at.exception
    text = page_text(at)
    assert "업스트림 (AI 서버)" in text
    rows = {line.split(",")[1]: line for line in text.splitlines() if line.count(",") >= 5}
    assert "대기 중 7.5초" in rows["azure-kc"] and ",3" in rows["azure-kc"]
    assert "정상" in rows["openai"]


def test_conversation_filters_pagination_and_transcript(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/conversations.py").run()
    first = env.calls("GET", "/admin/v1/conversations")[-1]["params"]
    assert first["page"] == "1" and first["page_size"] == "20" and "since" in first
    assert "총 45건 · 1/3 페이지" in page_text(at)

    at.selectbox(key="conv_source").set_value("user")
    at.selectbox(key="conv_client").set_value("k1")
    at.selectbox(key="conv_model").set_value("gpt-4.1")
    at.selectbox(key="conv_range").set_value("all")
    at.text_input(key="conv_q").input("날씨").run()
    assert not at.exception
    params = env.calls("GET", "/admin/v1/conversations")[-1]["params"]
    assert params == {"key_source": "user", "client_key_id": "k1", "model": "gpt-4.1", "q": "날씨", "page": "1",
                      "page_size": "20"}

    at.pagination(key="conv_page").set_value(3).run()
    assert not at.exception
    assert env.calls("GET", "/admin/v1/conversations")[-1]["params"]["page"] == "3"
    assert "총 45건 · 3/3 페이지" in page_text(at)
    # changing a filter goes back to page 1
    at.text_input(key="conv_q").input("비").run()
    assert env.calls("GET", "/admin/v1/conversations")[-1]["params"]["page"] == "1"

    at.selectbox(key="conv_open").set_value(1000).run()
    assert not at.exception
    assert env.calls("GET", "/admin/v1/conversations/1000/turns")
    assert len(at.chat_message) == 4
    texts = [t.value for t in at.text]
    assert "서울 날씨 알려줘" in texts and HOSTILE_REPLY in texts  # shown verbatim, as plain text
    assert not any(HOSTILE_REPLY in m.value for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    assert "812" in captions and "서버 키" in captions and "사용자 키" in captions and "추정치" in captions


def test_spend_currency_toggle_and_csv(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/spend.py").run()
    assert at.metric[0].value == "₩17,284"
    assert env.calls("GET", "/admin/v1/spend")[-1]["params"]["group_by"] == "day"
    at.radio(key="spend_currency").set_value("USD").run()
    assert at.metric[0].value == "$12.35"
    at.selectbox(key="spend_group").set_value("client_key")
    at.selectbox(key="spend_client").set_value("k1").run()
    params = env.calls("GET", "/admin/v1/spend")[-1]["params"]
    assert params["group_by"] == "client_key" and params["client_key_id"] == "k1" and "since" in params
    assert "익명" in page_text(at)
    at.button(key="spend_csv_prepare").click().run()
    assert not at.exception
    csv_params = env.calls("GET", "/admin/v1/spend/ledger.csv")[-1]["params"]
    assert csv_params["client_key_id"] == "k1" and csv_params["limit"] == "20000"
    text = page_text(at)
    assert "1행 준비됨" in text and "ledger_" in text and "_KST.csv" in text
    # the file travels inside the session (a Blob in a frame), never as a media URL
    frames = [f for f in _frames(at) if "createObjectURL" in f]
    assert len(frames) == 1 and "/media/" not in text
    # a filter changed after preparing: the prepared file is discarded, not offered stale
    at.selectbox(key="spend_client").set_value(None).run()
    assert not [f for f in _frames(at) if "createObjectURL" in f] and "필터가 바뀌어" in page_text(at)


def test_key_created_shown_once_then_revoked(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/keys.py").run()
    table = at.dataframe[0].value
    # fullest first: 팀 알파 at 50 % (daily 2.5/5 beats monthly 30/100), then the uncapped key
    assert list(table["이름"]) == ["팀 알파", "beta"] and list(table["사용률 (%)"])[0] == 50.0
    assert list(table["위험도"]) == ["정상", "한도 없음"]
    at.text_input(key="new_key_name").input("ops-bot")
    at.text_input(key="new_key_daily").input("2.5")
    at.button(key="new_key_submit").click().run()
    assert not at.exception
    posted = env.calls("POST", "/admin/v1/keys")[-1]
    assert '"name":"ops-bot"' in posted["body"].replace(" ", "") and '"daily_limit_usd":"2.5"' in posted["body"]
    assert [c.value for c in at.code] == [SECRET]
    at.run()  # any rerun: gone
    assert SECRET not in page_text(at)
    at.switch_page("app_pages/overview.py").run()
    at.switch_page("app_pages/keys.py").run()
    assert SECRET not in page_text(at) and "NEWKEYab" in page_text(at)
    assert SECRET not in repr(at.session_state)

    at.selectbox(key="keys_selected").set_value("k2").run()
    at.checkbox(key="revoke_confirm_k2").check().run()
    at.button(key="revoke_k2").click().run()
    assert not at.exception
    assert env.calls("POST", "/admin/v1/keys/k2/revoke")
    assert any("ef56gh78" in s.value for s in at.success)


def test_budget_and_bad_amount(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/keys.py").run()
    at.selectbox(key="keys_selected").set_value("k1").run()
    at.text_input(key="budget_daily_k1").input("-3")
    at.button(key="budget_save_k1").click().run()
    assert at.error and not env.calls("PUT", "/admin/v1/keys/k1/budget")
    at.text_input(key="budget_daily_k1").input("7.25")
    at.text_input(key="budget_monthly_k1").input("")
    at.button(key="budget_save_k1").click().run()
    assert not at.exception
    assert env.calls("PUT", "/admin/v1/keys/k1/budget")[-1]["body"].replace(" ", "") == (
        '{"daily_limit_usd":"7.25","monthly_limit_usd":null}')


def test_language_toggle(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.sidebar.radio(key="lang").set_value("en").run()
    assert at.title[0].value == "Overview"
    at.switch_page("app_pages/prices.py").run()
    assert at.title[0].value == "Price catalogue"
    assert any("2026\\-11\\-01" in m.value for m in at.markdown)  # the version, Markdown-escaped
    at.sidebar.radio(key="lang").set_value("ko").run()
    assert at.title[0].value == "가격표"


def test_sign_out(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.sidebar.button(key="signout").click().run()
    assert at.title[0].value == "관리자 로그인"


def test_overview_says_now_risk_and_who_paid(env: FakeAdmin) -> None:
    env.keys[0]["refused_today"] = 2  # 팀 알파 was refused today: at risk although at 50 %
    try:
        at = signed_in_app()
    finally:
        env.keys[0]["refused_today"] = 0
    values = [m.value for m in at.metric]
    assert "₩14,000" in values and "₩3,284" in values  # server-paid and user-paid apart
    assert "2,100 ms" in values and "420 ms" in values and "40" in values
    text = page_text(at)
    risk = at.dataframe[0].value
    assert list(risk["이름"]) == ["팀 알파"] and list(risk["오늘 402 거절"]) == [2]
    models = next(d.value for d in at.dataframe if "모델" in d.value.columns)
    assert list(models["비용 (원)"]) == ["₩14,000", "가격 없음"]  # never ₩0 for the unpriced model
    assert "가격 없는 요청 3건 제외" in text and "한국 시간(KST)" in text
    assert "✅" not in text and "❌" not in text


def test_requests_page_filters_live_in_the_url_and_a_row_opens(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/requests.py").run()
    assert not at.exception, at.exception
    assert at.query_params.get("range") == ["24h"] or at.query_params.get("range") == "24h"
    table = at.dataframe[0].value
    assert list(table["상태 코드"])[:4] == [200, 402, 429, 502]
    assert HOSTILE_ID in list(table["요청 ID"])  # as text in a cell: no link, no heading
    assert not any(HOSTILE_ID in m.value for m in at.markdown)
    at.selectbox(key="req_status").set_value("402").run()
    params = env.calls("GET", "/admin/v1/requests")[-1]["params"]
    assert params["status"] == "402" and "since" in params and params["page"] == "1"
    qp = dict(at.query_params)
    assert qp.get("status") in ("402", ["402"])

    # a deep link with filters and a request id reopens the same view with its detail and turn
    deep = AppTest.from_file(str(ENTRY), default_timeout=30)
    deep.query_params.update({"status": "error", "range": "7d", "page": "2", "rid": "req-4"})
    deep.run()
    deep.text_input(key="signin_password").input(PASSWORD)
    deep.button(key="signin_submit").click().run()
    deep.switch_page("app_pages/requests.py").run()
    assert not deep.exception, deep.exception
    assert deep.selectbox(key="req_status").value == "error" and deep.selectbox(key="req_range").value == "7d"
    last = env.calls("GET", "/admin/v1/requests")[-1]["params"]
    assert last["status"] == "error" and last["page"] == "2"
    assert env.calls("GET", "/admin/v1/requests/req-4") and env.calls("GET", "/admin/v1/conversations/1000/turns")
    texts = [x.value for x in deep.text]
    assert "서울 날씨 알려줘" in texts and HOSTILE_REPLY in texts
    detail = deep.dataframe[-1].value
    assert "user_key_rejected" in list(detail[" "])

    deep.button(key="req_export_prepare").click().run()
    assert not deep.exception
    exported = env.calls("GET", "/admin/v1/requests.csv")[-1]["params"]
    assert exported["status"] == "error" and exported["limit"] == "20000" and "since" in exported
    assert [f for f in _frames(deep) if "createObjectURL" in f and "requests_" in f]


def test_keys_page_with_1000_keys_sorts_searches_and_pages(env: FakeAdmin) -> None:
    saved = env.keys
    now = datetime.now(UTC)
    env.keys = [FakeAdmin._key(f"id{i:04d}", f"s{i:07d}", f"key-{i:04d}", now, daily="10.00000000",
                               spent_today=f"{(i * 7919) % 1000 / 100:.8f}") for i in range(1000)]
    try:
        at = signed_in_app()
        at.switch_page("app_pages/keys.py").run()
        assert not at.exception, at.exception
        table = at.dataframe[0].value
        assert len(table) == 50 and "총 1,000건 · 1/20 페이지" in page_text(at)
        pcts = list(table["사용률 (%)"])
        assert pcts == sorted(pcts, reverse=True) and pcts[0] == 99.9
        assert "한도 도달" not in list(table["위험도"]) and "주의" in list(table["위험도"])
        at.pagination(key="keys_page").set_value(20).run()
        assert list(at.dataframe[0].value["사용률 (%)"])[-1] == 0.0
        at.text_input(key="keys_search").input("key-0042").run()
        assert list(at.dataframe[0].value["이름"]) == ["key-0042"] and "총 1건 · 1/1 페이지" in page_text(at)
    finally:
        env.keys = saved


def test_empty_database_states(env: FakeAdmin) -> None:
    saved_keys, saved_log = env.keys, env.log
    env.keys, env.log = [], []
    try:
        at = signed_in_app()
        assert "예산 위험 키가 없습니다." in page_text(at)
        for page in ("requests", "keys", "audit"):
            at.switch_page(f"app_pages/{page}.py").run()
            assert not at.exception and not at.error, page
        at.switch_page("app_pages/requests.py").run()
        assert "데이터가 없습니다." in page_text(at)
    finally:
        env.keys, env.log = saved_keys, saved_log


def test_audit_and_alerts_page(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/audit.py").run()
    audit, alerts = at.dataframe[0].value, at.dataframe[1].value
    assert list(audit["작업"]) == ["예산 변경"] and list(audit["수행자"]) == ["console"]
    assert "일일 한도=7.25" in list(audit["변경 내용"])[0] and "KST" in list(audit["시각 (KST)"])[0]
    assert list(alerts["종류"]) == ["예산"] and list(alerts["전송됨"]) == ["예"]


def test_english_everywhere_when_chosen(env: FakeAdmin) -> None:
    for page, title in (("requests", "Request log"), ("keys", "Client keys"), ("audit", "Audit log & alerts"),
                        ("host", "Host"), ("overview", "Overview")):
        # a fresh app per page: AppTest formats a selectbox's value outside the script run,
        # where the session's language is not visible
        at = signed_in_app()
        at.sidebar.radio(key="lang").set_value("en").run()
        at.switch_page(f"app_pages/{page}.py").run()
        assert at.title[0].value == title
        text = page_text(at)
        if page != "audit":  # the audit page shows stored alert texts, which are bilingual data
            assert "요청" not in text and "클라이언트" not in text, page
    # the language is kept for the next visit (a cookie) and the page says lang="en"
    frames = " ".join(_frames(at))
    assert "llm_console_lang=en" in frames and "documentElement.lang = \\'en\\'" in frames


def test_a_valid_session_cookie_signs_in_and_a_forged_one_does_not(env: FakeAdmin, monkeypatch) -> None:
    from streamlit.runtime.context import ContextProxy

    from admin_ui import session_cookie

    at = signed_in_app()
    issued = [f for f in _frames(at) if "llm_console_session=" in f]
    assert len(issued) == 1 and "SameSite=Strict" in issued[0]
    token = issued[0].split("llm_console_session=", 1)[1].split(";", 1)[0]
    assert session_cookie.valid(token) and PASSWORD not in token

    jar: dict[str, str] = {}
    monkeypatch.setattr(ContextProxy, "cookies", property(lambda self: jar))
    for forged in ("", token[:-2] + "xx", "x." + token.split(".", 1)[1]):
        jar["llm_console_session"] = forged
        fresh = AppTest.from_file(str(ENTRY), default_timeout=30)
        fresh.run()
        assert fresh.title[0].value == "관리자 로그인", forged
    jar["llm_console_session"] = token
    reloaded = AppTest.from_file(str(ENTRY), default_timeout=30)  # a reload: a new session
    reloaded.run()
    assert reloaded.title[0].value == "개요" and not reloaded.exception
    # an expired token is refused
    assert not session_cookie.valid(token, max_age=-1)
    # sign-out clears the cookie and does not sign straight back in
    reloaded.sidebar.button(key="signout").click().run()
    assert reloaded.title[0].value == "관리자 로그인"
    assert any("llm_console_session=; path=/; max-age=0" in f for f in _frames(reloaded))


def test_chat_api_down_shows_a_message_on_every_page(env: FakeAdmin, monkeypatch) -> None:
    monkeypatch.setenv("CHAT_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    at = signed_in_app()
    assert [e.value for e in at.error] == ["관리 API에 연결할 수 없습니다."]
    for page in ALL_PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, page
        assert "관리 API에 연결할 수 없습니다." in [e.value for e in at.error], page


class FrozenServers:
    """chat-apis that accept connections and never answer (frozen, or an event loop stuck):
    every connection is accepted and held open; nothing is read or sent."""

    def __init__(self) -> None:
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._held: list[socket.socket] = []
        self.accepted: dict[str, int] = {}  # connections accepted, by URL

    def new(self) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self.accepted[url] = 0

        def accept_forever() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # the listener was closed: the test is over
                    return
                self._held.append(conn)
                self.accepted[url] += 1

        thread = threading.Thread(target=accept_forever, daemon=True)
        thread.start()
        self._listeners.append(listener)
        self._threads.append(thread)
        return url

    def close(self) -> None:
        for listener in self._listeners:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for thread in self._threads:
            thread.join(10)
        for conn in self._held:
            conn.close()


@pytest.fixture
def frozen() -> Iterator[FrozenServers]:
    servers = FrozenServers()
    yield servers
    servers.close()


ALL_PAGES = ("overview", "requests", "conversations", "spend", "keys", "audit", "host", "prices")


def test_chat_api_frozen_shows_a_message_on_every_page(env: FakeAdmin, frozen: FrozenServers, monkeypatch) -> None:
    """chat-api accepts but never answers (the monitor is fine): each page says so instead of
    staying blank while its calls wait (the AppTest run would time out first). Each page gets
    a chat-api of its own, so none is helped by an earlier page's timeout; and each waits on
    one call only (the rest fail at once), not on every call it makes in turn."""
    monkeypatch.setenv("CHAT_API_URL", frozen.new())
    at = signed_in_app()
    assert "관리 API에 연결할 수 없습니다." in [e.value for e in at.error]
    for page in ALL_PAGES:
        url = frozen.new()
        monkeypatch.setenv("CHAT_API_URL", url)
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert "관리 API에 연결할 수 없습니다." in [e.value for e in at.error], page
        assert frozen.accepted[url] == 1, (page, frozen.accepted[url])


def test_tables_offer_no_unescaped_csv_of_their_own() -> None:
    """A dataframe's built-in download neutralises no formula: the console turns it off, so
    every export is the admin API's (escaped, KST, KRW, names)."""
    from admin_ui.main import command

    argv = command()
    assert argv[argv.index("--client.disableDataExport") + 1] == "true"


def test_hostile_conversation_id_is_text_not_a_link_or_heading(env: FakeAdmin) -> None:
    hostile = "session\n# 보안 경고 www.evil-phish.example/login [클릭](http://evil.example) ops@evil.example"
    saved = env.conversations[0]["external_id"]
    env.conversations[0]["external_id"] = hostile
    try:
        at = signed_in_app()
        at.switch_page("app_pages/conversations.py").run()
        at.selectbox(key="conv_open").set_value(1000).run()
        assert not at.exception
        rendered = [x.value for x in (*at.subheader, *at.caption, *at.markdown)]
        title = next(v for v in rendered if "session" in v)
        assert "\n" not in title and r"www\.evil\-phish\.example" in title and r"ops\@evil\.example" in title
        assert r"\[클릭\]\(http\:" in title
        # nowhere is the raw text handed to a Markdown element
        assert not any("www.evil-phish" in v or "](http" in v for v in rendered)
    finally:
        env.conversations[0]["external_id"] = saved


def test_a_banner_on_every_page_when_errors_are_high_now(env: FakeAdmin) -> None:
    at = signed_in_app()
    assert not at.warning  # 2 of 40: quiet
    env.now = {"requests": 40, "errors": 30, "by_class": {"2xx": 10, "5xx": 30}}
    try:
        for page in ("requests", "keys", "host"):
            at.switch_page(f"app_pages/{page}.py").run()
            assert any("30건 (75%) 실패" in w.value for w in at.warning), page
    finally:
        env.now = {"requests": 40, "errors": 2, "by_class": {"2xx": 38, "5xx": 2}}


def test_overview_answers_is_anything_broken_now(env: FakeAdmin) -> None:
    """TTFT, each service's and the database's health, each upstream's circuit, personal
    data per kind, and the last 24 hours as three charts."""
    env.keys[0]["refused_today"] = 1  # at risk: listed with when it was last used
    try:
        at = signed_in_app()
    finally:
        env.keys[0]["refused_today"] = 0
    assert not at.exception, at.exception
    values = [m.value for m in at.metric]
    assert "180 ms" in values and "650 ms" in values  # time to first token p50 / p95
    labels = [m.label for m in at.metric]
    assert "첫 토큰 p50" in labels and "전화번호" in labels and "주민등록번호" in labels
    assert "10" in values and "7" in values  # PII total and phone numbers this month
    assert any("차단된 요청에서 감지" in c.value and "카드번호 3" in c.value for c in at.caption)
    md = "\n".join(m.value for m in at.markdown)
    assert "차단됨 \\(열림, 7\\.5초 후 재시도\\)" in md and "azure\\-kc" in md  # the open circuit, in red
    assert ":red[" in md and ":green[" in md
    assert "database" in md and "monitor" in md
    assert "✅" not in md and "❌" not in md
    text = page_text(at)
    assert "최근 24시간" in text and "시간별 요청 (상태별)" in text and "시간별 지연 (ms)" in text
    charts = [n for n in _walk(at._tree) if getattr(n, "type", None) == "vega_lite_chart"]
    assert len(charts) == 4  # status, latency, cost per hour + 30 days
    risk = at.dataframe[0].value
    assert list(risk["이름"]) == ["팀 알파"] and "KST" in list(risk["마지막 사용"])[0]


def test_key_page_shows_pii_and_sets_the_policy(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/keys.py").run()
    table = at.dataframe[0].value
    used = dict(zip(table["이름"], table["마지막 사용"], strict=True))
    assert used["beta"] == "사용 안 함" and "KST" in used["팀 알파"]
    assert set(table["개인정보 정책"]) == {"서버 기본값 (PII_POLICY)"}
    at.selectbox(key="keys_selected").set_value("k1").run()
    assert not at.exception, at.exception
    assert at.query_params.get("key") in ("k1", ["k1"])
    pii = [(m.label, m.value) for m in at.metric][-3:]
    assert pii == [("전화번호", "7"), ("주민등록번호", "2"), ("이메일", "1")]
    assert any("카드번호 3" in c.value for c in at.caption)  # refused under block: nothing sent
    assert env.calls("GET", "/admin/v1/pii")[-1]["params"] == {"client_key_id": "k1"}
    at.selectbox(key="pii_policy_k1").set_value("block")
    at.button(key="pii_save_k1").click().run()
    assert not at.exception, at.exception
    assert env.calls("PUT", "/admin/v1/keys/k1/pii-policy")[-1]["body"].replace(" ", "") == '{"pii_policy":"block"}'
    assert any("개인정보 정책을 저장했습니다." in s.value for s in at.success)
    assert "차단 (400)" in list(at.dataframe[0].value["개인정보 정책"])
    at.selectbox(key="keys_selected").set_value("k2").run()
    assert "이번 달 이 키의 요청에서 감지된 개인정보가 없습니다." in page_text(at)
    env.keys[0]["pii_policy"] = None


def test_extra_models_are_in_filters_and_prices_without_a_price(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/prices.py").run()
    prices = at.dataframe[0].value
    row = prices[prices["모델"] == "my-finetune"].iloc[0]
    assert (row["입력"], row["출력"]) == ("가격 없음", "가격 없음")
    at.switch_page("app_pages/conversations.py").run()
    assert "my-finetune" in at.selectbox(key="conv_model").options
    at.switch_page("app_pages/spend.py").run()
    assert "my-finetune" in at.selectbox(key="spend_model").options
    at.selectbox(key="spend_model").set_value("my-finetune").run()
    assert env.calls("GET", "/admin/v1/spend")[-1]["params"]["model"] == "my-finetune"


def test_key_rotation_shows_the_new_secret_once(env: FakeAdmin) -> None:
    saved = [dict(k) for k in env.keys]
    try:
        at = signed_in_app()
        at.switch_page("app_pages/keys.py").run()
        at.selectbox(key="keys_selected").set_value("k1").run()
        assert at.button(key="rotate_k1").disabled  # not without the confirmation
        at.checkbox(key="rotate_confirm_k1").check().run()
        at.button(key="rotate_k1").click().run()
        assert not at.exception, at.exception
        assert env.calls("POST", "/admin/v1/keys/k1/rotate")
        assert [c.value for c in at.code] == [SECRET]
        assert any("ab12cd34" in s.value and "ROTATEDx" in s.value for s in at.success)
        at.run()  # any rerun: gone
        assert SECRET not in page_text(at) and SECRET not in repr(at.session_state)
    finally:
        env.keys = saved


def test_key_expiry_is_set_shown_and_an_expired_key_marked(env: FakeAdmin) -> None:
    from datetime import date

    saved = [dict(k) for k in env.keys]
    try:
        at = signed_in_app()
        at.switch_page("app_pages/keys.py").run()
        at.text_input(key="new_key_name").input("임시 키")
        at.date_input(key="new_key_expires").set_value(date(2030, 12, 31))
        at.button(key="new_key_submit").click().run()
        assert not at.exception, at.exception
        posted = env.calls("POST", "/admin/v1/keys")[-1]["body"].replace(" ", "")
        # valid through 31 December, Korean time: it stops at the next local midnight
        assert '"expires_at":"2030-12-31T15:00:00Z"' in posted
        at.selectbox(key="keys_selected").set_value("k1").run()
        at.date_input(key="expiry_day_k1").set_value(date(2031, 1, 15))
        at.button(key="expiry_save_k1").click().run()
        assert not at.exception, at.exception
        assert env.calls("PUT", "/admin/v1/keys/k1/expiry")[-1]["body"].replace(" ", "") == (
            '{"expires_at":"2031-01-15T15:00:00Z"}')
        env.keys[0]["expires_at"] = "2020-01-01T00:00:00Z"
        at.run()
        table = at.dataframe[0].value
        row = table[table["이름"] == "팀 알파"].iloc[0]
        assert row["위험도"] == "만료됨" and row["만료"].startswith("2020-01-01 09:00")
    finally:
        env.keys = saved


# -- the message catalogue ------------------------------------------------------------------------

def _console_sources() -> list[tuple[Path, Any]]:
    import ast

    root = Path(admin_ui.__file__).parent
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(root.rglob("*.py")) if p.name != "i18n.py"]


def _catalogue_uses() -> tuple[set[str], set[str], set[str]]:
    """String literals of the console's code, the literal keys passed to ``t``/``lookup``,
    and the prefixes of keys built there (``t(f"range.{r}")``)."""
    import ast

    literals: set[str] = set()
    keys: set[str] = set()
    prefixes: set[str] = set()
    for _, tree in _console_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("t", "lookup") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    keys.add(arg.value)
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    prefixes.add(str(arg.values[0].value))
                else:
                    raise AssertionError(f"a message key the test cannot read: {ast.unparse(arg)}")
    return literals, keys, prefixes


def test_every_message_key_used_exists_and_every_key_is_used() -> None:
    """A key the code asks for is in the catalogue (a missing one is a KeyError on a page);
    a key in the catalogue is asked for, literally or as ``prefix.{value}`` with a value the
    code names (an unused one is dead text to translate)."""
    from admin_ui.i18n import STRINGS

    literals, keys, prefixes = _catalogue_uses()
    assert sorted(k for k in keys if k not in STRINGS) == []
    assert sorted(p for p in prefixes if not any(k.startswith(p) for k in STRINGS)) == []
    unused = [k for k in STRINGS
              if k not in literals and not any(k.startswith(p) and k[len(p):] in literals for p in prefixes)]
    assert unused == []


def test_every_message_has_both_languages_with_the_same_placeholders() -> None:
    import string

    from admin_ui.i18n import STRINGS

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}

    for key, (ko, en) in STRINGS.items():
        assert ko.strip() and en.strip(), key
        assert fields(ko) == fields(en), key
