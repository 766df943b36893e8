"""The console (AppTest) against a chat-api process on real PostgreSQL.

CSV exports in parts: more rows than one part holds, several of them sharing the timestamp
where a part ends; the parts together are every row exactly once. A key without a name is
refused in the console, which posts nothing and keeps the rest of the form."""
from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

import admin_ui
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.ledger import write_records
from domain.adapters.sql.request_log import write_entries
from domain.key_policy import KeySource
from domain.ledger import UsageRecord
from domain.money import Money
from domain.periods import KST
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage
from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import stop

ENTRY = Path(admin_ui.__file__).with_name("streamlit_app.py")
PASSWORD = "export parts password"
PART = 5
# 13 rows, newest first; the 4th to the 8th share one timestamp, so the first part (5 rows)
# ends inside that group.
OFFSETS = [0, 1, 2, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8]


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    url = create_database("llm_parts")
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def api(db_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    proc, api = start_chat_api(db_url, fake_openai, tmp_path_factory.mktemp("parts"))
    yield api
    stop(proc)


@pytest.fixture
def console(api: ChatApiProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    monkeypatch.setenv("CHAT_API_URL", api.url)
    monkeypatch.setenv("MONITOR_URL", api.url)
    monkeypatch.setenv("ADMIN_TOKEN", api.admin_token)
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CONSOLE_EXPORT_PART_ROWS", str(PART))
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    at.text_input(key="signin_password").input(PASSWORD)
    at.button(key="signin_submit").click().run()
    assert not at.exception, at.exception
    return at


def _times() -> list[datetime]:
    base = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
    return [base - timedelta(seconds=s) for s in OFFSETS]


def _all_parts(at: AppTest, state_key: str, button_key: str) -> list[list[str]]:
    """Prepares the export, then asks for the next part while the last one was cut; returns
    each part's request ids."""
    at.button(key=f"{button_key}_prepare").click().run()
    assert not at.exception, at.exception
    parts = []
    while True:
        prepared = at.session_state[state_key]
        rows = list(csv.DictReader(io.StringIO(prepared.body.decode("utf-8-sig"))))
        parts.append([r["request_id"] for r in rows])
        assert len(parts) <= len(OFFSETS), "no end to the parts"
        if not prepared.truncated:
            return parts
        at.button(key=f"{button_key}_next").click().run()
        assert not at.exception, at.exception


def _newest_first(exported: list[str], ids: list[str]) -> bool:
    """Across the parts, newest first (rows of one time in any order)."""
    ages = [OFFSETS[ids.index(rid)] for rid in exported]
    return ages == sorted(ages)


def test_request_log_parts_cover_every_row_once(api: ChatApiProcess, db_url: str, console: AppTest) -> None:
    ids = [f"req-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(len(OFFSETS))]
    engine = make_engine(db_url)
    # written oldest id last, so the tied rows' ids run against their order on screen too
    write_entries(engine, [RequestLogEntry(rid, at, "/v1/chat/completions", 200, model="gpt-4o-mini")
                           for rid, at in reversed(list(zip(ids, _times(), strict=True)))])
    engine.dispose()
    console.switch_page("app_pages/requests.py").run()
    parts = _all_parts(console, "_req_export", "req_export")
    exported = [rid for part in parts for rid in part]
    assert [len(p) for p in parts] == [5, 5, 3]
    assert len(exported) == len(set(exported)) and set(exported) == set(ids)
    assert _newest_first(exported, ids)


def test_ledger_parts_cover_every_row_once(api: ChatApiProcess, db_url: str, console: AppTest) -> None:
    ids = [f"led-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(len(OFFSETS))]
    engine = make_engine(db_url)
    write_records(engine, [
        UsageRecord(request_id=rid, created_at=at, client_key_id=None, route="/v1/chat/completions",
                    model="gpt-4o-mini", usage=TokenUsage(input_tokens=10, output_tokens=5), cost=Money(1_000),
                    catalog_version="t", key_source=KeySource.SERVER, latency_ms=50)
        for rid, at in zip(ids, _times(), strict=True)])
    engine.dispose()
    console.switch_page("app_pages/spend.py").run()
    parts = _all_parts(console, "_spend_export", "spend_csv")
    exported = [rid for part in parts for rid in part]
    assert [len(p) for p in parts] == [5, 5, 3]
    assert len(exported) == len(set(exported)) and set(exported) == set(ids)
    assert _newest_first(exported, ids)


def test_next_part_cursor_needs_until(api: ChatApiProcess) -> None:
    """``before_id`` says where in ``until``'s rows to go on: alone it means nothing (a clear
    400, Korean by default), and it is a positive row id."""
    headers = {"Authorization": f"Bearer {api.admin_token}"}
    for path in ("/admin/v1/requests.csv", "/admin/v1/spend/ledger.csv"):
        r = httpx.get(api.url + path, params={"before_id": 5}, headers=headers)
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert (detail["code"], detail["field"]) == ("invalid_field", "before_id")
        assert detail["message"] == "before_id은(는) until과 함께 보내야 합니다."
        en = httpx.get(api.url + path, params={"before_id": 5}, headers={**headers, "Accept-Language": "en"})
        assert en.json()["detail"]["message"] == "before_id must be sent with until."
        for bad in ("0", "-1", "x"):
            r = httpx.get(api.url + path, params={"before_id": bad, "until": "2026-11-30T00:00:00Z"},
                          headers=headers)
            assert r.status_code == 422 and r.json()["detail"]["code"], (path, bad, r.text)


def _key_rows(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM client_keys")).scalar_one())
    finally:
        engine.dispose()


def test_a_key_without_a_name_is_refused_and_the_form_kept(api: ChatApiProcess, db_url: str,
                                                           console: AppTest) -> None:
    """A blank or whitespace-only name: "이름을 입력하세요." and nothing sent (no key in the
    database, none in the admin API's list, nothing audited); the other fields stay as typed,
    and with a name added the same form creates the key with them."""
    admin = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.admin_token}"})
    keys_before, rows_before = admin.get("/admin/v1/keys").json()["items"], _key_rows(db_url)
    audit_before = admin.get("/admin/v1/audit").json()["total"]
    through = datetime.now(KST).date() + timedelta(days=30)
    at = console
    at.switch_page("app_pages/keys.py").run()
    at.text_input(key="new_key_daily").input("5")
    at.text_input(key="new_key_monthly").input("100")
    at.checkbox(key="new_key_server").uncheck()
    at.selectbox(key="new_key_pii").set_value("block")
    at.date_input(key="new_key_expires").set_value(through)
    for blank in ("", "   \t "):
        at.text_input(key="new_key_name").input(blank)
        at.button(key="new_key_submit").click().run()
        assert not at.exception, at.exception
        assert "이름을 입력하세요." in [e.value for e in at.error], repr(blank)
        assert not at.code  # no secret shown: no key was made
        assert admin.get("/admin/v1/keys").json()["items"] == keys_before
        assert _key_rows(db_url) == rows_before
        assert admin.get("/admin/v1/audit").json()["total"] == audit_before
        assert at.text_input(key="new_key_name").value == blank
        assert (at.text_input(key="new_key_daily").value, at.text_input(key="new_key_monthly").value) == ("5", "100")
        assert at.checkbox(key="new_key_server").value is False
        assert at.selectbox(key="new_key_pii").value == "block"
        assert at.date_input(key="new_key_expires").value == through

    name = f"named-{uuid.uuid4().hex[:6]}"
    at.text_input(key="new_key_name").input(f"  {name}  ")
    at.button(key="new_key_submit").click().run()
    assert not at.exception and not at.error, at.error
    assert at.code and at.code[0].value.startswith("llms-")
    [made] = [k for k in admin.get("/admin/v1/keys").json()["items"] if k["name"] == name]
    assert (made["daily_limit_usd"], made["monthly_limit_usd"], made["may_use_server_key"], made["pii_policy"]) == (
        "5.00000000", "100.00000000", False, "block")
    assert made["expires_at"] is not None and _key_rows(db_url) == rows_before + 1
    admin.close()
