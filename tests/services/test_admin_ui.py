"""The Streamlit console, driven by AppTest from its entrypoint, against a fake admin API
and monitor served over real HTTP on loopback (canned data shaped like docs/admin-api.md)."""
from __future__ import annotations

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


class FakeAdmin:
    """A fake chat_api admin API + monitor: canned answers, and a log of every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        now = datetime.now(UTC)
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
        return {"id": kid, "short_id": short, "name": name, "created_at": created.isoformat(), "revoked_at": None,
                "daily_limit_usd": daily, "monthly_limit_usd": monthly, "may_use_server_key": True,
                "spent_today_usd": spent_today, "spent_month_usd": spent_month}

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
                  "cost_usd": "12.34567890", "cost_krw": "17283.95"}
        today = datetime.now(UTC).date()

        @app.get("/admin/v1/overview")
        def overview() -> dict:
            return {"usd_krw_rate": "1400", "today": totals,
                    "month": {**totals, "requests": 40_000, "cost_usd": "321.00000000", "cost_krw": "449400.00"},
                    "top_models": [{"model": "gpt-4o-mini", "requests": 900, "cost_usd": "10.00000000",
                                    "cost_krw": "14000.00"}],
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
                {"turn_index": 1, "created_at": now.isoformat(), "request_id": "r1", "system_prompt": "간결하게",
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
                {"model": "gpt-4.1", "input": "2", "cached_input": "0.5", "output": "8", "max_output_tokens": 32768}]}

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
    assert "₩17,284" in values and "1,234" in values and "₩449,400" in values
    assert "1.0%" in values  # error rate 12 / 1234
    text = page_text(at)
    assert "팀 알파 (ab12cd34)" in text and "gpt-4o-mini" in text
    assert TOKEN not in text and PASSWORD not in text
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in env.requests if r["path"].startswith("/admin/"))


@pytest.mark.parametrize("page", ["overview", "conversations", "spend", "keys", "host", "prices"])
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
    assert csv_params["client_key_id"] == "k1"
    assert "1행 준비됨" in page_text(at)


def test_key_created_shown_once_then_revoked(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.switch_page("app_pages/keys.py").run()
    assert len(at.get("progress")) == 2  # 팀 알파: daily 2.5/5 and monthly 30/100
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
    assert at.title[0].value == "Price catalogue" and "2026-11-01" in page_text(at)
    at.sidebar.radio(key="lang").set_value("ko").run()
    assert at.title[0].value == "가격표"


def test_sign_out(env: FakeAdmin) -> None:
    at = signed_in_app()
    at.sidebar.button(key="signout").click().run()
    assert at.title[0].value == "관리자 로그인"
