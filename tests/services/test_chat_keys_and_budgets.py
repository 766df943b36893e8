"""Key policy rows, the fallback, budgets under concurrency, and secrets that never leave."""
from __future__ import annotations

import asyncio
import time

import httpx
import psycopg
import pytest

from tests.services.conftest import SERVER_KEY

CANARY = "sk-canary-Q7v3Zx9L-mN2pR5tW-8yB1cD4f"
CANARY_INVALID = "sk-invalid-canaryK8s2Lw5Nq7Rt9Vx1Zb3Dc"


def _chat(api, key, **body):
    return httpx.post(api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {key}"} if key else {},
                      json={"user_prompt": "키 정책", **body}, timeout=30)


@pytest.mark.parametrize(("body", "paid_by", "reason", "upstream_keys"), [
    ({"use_user_api_key": True, "openai_api_key": "sk-user-ok-123456"}, "user", None, ["sk-user-ok-123456"]),
    ({"use_user_api_key": True, "openai_api_key": ""}, "server", "user_key_missing", [SERVER_KEY]),
    ({"use_user_api_key": False, "openai_api_key": "sk-user-ok-123456"}, "server", None, [SERVER_KEY]),
    ({"use_user_api_key": True, "openai_api_key": "sk-invalid-user-1"}, "server", "user_key_rejected",
     ["sk-invalid-user-1", SERVER_KEY]),
    ({"use_user_api_key": True, "openai_api_key": "sk-quota-user-1"}, "server", "user_key_quota_exceeded",
     ["sk-quota-user-1", SERVER_KEY]),
])
def test_key_policy_rows(chat_api, client_key, body, paid_by, reason, upstream_keys):
    chat_api.clear_fake()
    r = _chat(chat_api, client_key, **body)
    assert r.status_code == 200, r.text
    assert (r.json()["key_source"], r.json()["fallback_reason"]) == (paid_by, reason)
    assert [s["key"] for s in chat_api.fake_requests()] == upstream_keys


def test_no_fallback_for_a_client_that_may_not_use_the_server_key(chat_api):
    import os
    import subprocess

    from tests.support.processes import BIN, ROOT
    out = subprocess.run([str(BIN / "llmctl"), "keys", "create", "--name", "byok-only", "--no-server-key"],
                         env={**os.environ, **chat_api.env}, cwd=ROOT, capture_output=True, text=True, check=True)
    key = out.stdout.strip().splitlines()[-1]
    r = _chat(chat_api, key, use_user_api_key=True, openai_api_key="sk-invalid-user-2")
    assert r.status_code == 503 and r.json()["success"] is False
    r = _chat(chat_api, key)
    assert r.status_code == 403 and r.json()["code"] == "server_key_not_allowed"


def test_budget_race_never_overspends_and_refusals_never_reach_upstream(chat_api):
    # Each request costs exactly 2 input × 0.15 + 12 output × 0.60 = 7.5 µUSD on gpt-4o-mini
    # (fake upstream: ceil(8 chars / 4) = 2 prompt tokens, 12 completion tokens); the budget
    # is worth 5 of them.
    key = chat_api.issue_key("budget-race-5", daily_usd="0.0000375")
    chat_api.clear_fake()

    async def fire():
        async with httpx.AsyncClient(base_url=chat_api.url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=30) as client:
            return await asyncio.gather(*[client.post("/api/v1/chat", json={
                "user_prompt": f"예산 경주 {i:02d}", "max_tokens": 12}) for i in range(20)])

    results = asyncio.run(fire())
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 402]
    assert len(ok) + len(refused) == 20
    assert 1 <= len(ok) <= 5
    assert all(r.json()["code"] == "budget_exceeded" for r in refused)
    assert len(chat_api.fake_requests()) == len(ok), "a refused request never reaches the upstream"
    chat_api.flush_ledger()
    with psycopg.connect(chat_api.pg_url) as conn:
        key_id = conn.execute("SELECT id FROM client_keys WHERE name='budget-race-5'").fetchone()[0]
        spent, reserved = conn.execute("SELECT spent_nanos, reserved_nanos FROM budget_counters "
                                       "WHERE scope=%s AND period LIKE 'd:%%'", (f"key:{key_id}",)).fetchone()
        ledger = conn.execute("SELECT sum(charged_nanos) FROM spend_ledger WHERE client_key_id=%s",
                              (key_id,)).fetchone()[0]
    assert reserved == 0 and spent == ledger == len(ok) * 7_500 and spent <= 37_500


def test_revoked_key_stops_within_the_cache_window(chat_api):
    import uuid

    name = f"to-revoke-{uuid.uuid4().hex[:8]}"  # the session database is shared with other tests
    key = chat_api.issue_key(name)
    assert _chat(chat_api, key).status_code == 200
    with psycopg.connect(chat_api.pg_url) as conn:
        key_id = conn.execute("SELECT id FROM client_keys WHERE name=%s", (name,)).fetchone()[0]
    import os
    import subprocess

    from tests.support.processes import BIN, ROOT
    subprocess.run([str(BIN / "llmctl"), "keys", "revoke", key_id], env={**os.environ, **chat_api.env}, cwd=ROOT,
                   check=True, capture_output=True)
    deadline = time.monotonic() + 20  # the cache keeps an answer 5 s; a loaded machine is slow
    while time.monotonic() < deadline and _chat(chat_api, key).status_code == 200:
        time.sleep(0.5)
    r = _chat(chat_api, key)
    assert r.status_code == 403 and r.json()["code"] == "client_key_revoked"


def test_sql_looking_credentials_are_refused_quickly(chat_api):
    started = time.monotonic()
    r = httpx.post(chat_api.url + "/v1/chat/completions",
                   headers={"Authorization": "Bearer x' OR (SELECT pg_sleep(8)) IS NOT NULL --"},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401
    assert time.monotonic() - started < 2


def test_canary_keys_never_leave(chat_api, client_key):
    """Send canary user keys through every route, success and failure, streaming too; then
    look for any 8-character piece of them in responses, logs and every table."""
    responses = [
        _chat(chat_api, client_key, use_user_api_key=True, openai_api_key=CANARY, request_id="canary-conv"),
        _chat(chat_api, client_key, use_user_api_key=True, openai_api_key=CANARY_INVALID),
        _chat(chat_api, client_key, use_user_api_key=True, openai_api_key=CANARY, model="fake-500"),
        httpx.post(chat_api.url + "/api/v1/chat/stream", headers={"Authorization": f"Bearer {client_key}"},
                   json={"user_prompt": "s", "use_user_api_key": True, "openai_api_key": CANARY}),
    ]
    for path, body in [("/v1/chat/completions", {"messages": [{"role": "user", "content": "c"}]}),
                       ("/v1/responses", {"input": "c"})]:
        for stream in (False, True):
            for user_key in (CANARY, CANARY_INVALID):
                responses.append(httpx.post(chat_api.url + path, json={"model": "gpt-4o-mini", "stream": stream, **body},
                                            headers={"Authorization": f"Bearer {client_key}",
                                                     "X-OpenAI-Api-Key": user_key}))
    responses.append(httpx.post(chat_api.url + "/v1/chat/completions",
                                json={"model": "fake-500", "messages": [{"role": "user", "content": "c"}]},
                                headers={"Authorization": f"Bearer {client_key}", "X-OpenAI-Api-Key": CANARY}))
    chat_api.flush_ledger()
    pieces = {c[i:i + 8] for c in (CANARY, CANARY_INVALID) for i in range(3, len(c) - 7)}  # past the "sk-" prefix

    def leaks(text: str) -> set[str]:
        return {p for p in pieces if p in text}

    for r in responses:
        assert not leaks(r.text + str(r.headers)), r.text
    assert not leaks(chat_api.log_path.read_text(errors="replace"))
    with psycopg.connect(chat_api.pg_url) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")]
        for table in tables:
            dump = str(conn.execute(f'SELECT * FROM "{table}"').fetchall())
            assert not leaks(dump), table


@pytest.mark.parametrize("field", ["base_url", "api_base"])
def test_no_request_can_point_the_gateway_elsewhere(chat_api, client_key, field):
    """A listener stands where the request tries to send the gateway; nothing connects."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(1.0)
    target = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        for path, body in [("/api/v1/chat", {"user_prompt": "x", field: target}),
                           ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
                               {"role": "user", "content": "x"}], "extra": {"nested": [{field: target}]}}),
                           ("/v1/responses", {"model": "gpt-4o-mini", "input": "x", field: target})]:
            r = httpx.post(chat_api.url + path, json=body, headers={"Authorization": f"Bearer {client_key}"})
            assert r.status_code == 400, r.text
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
