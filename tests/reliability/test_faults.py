"""Faults with real processes: the database going away, and SIGTERM with streams open."""
from __future__ import annotations

import asyncio
import signal
import time

import httpx
import psycopg

from tests.services.conftest import start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import stop
from tests.support.reconcile import assert_reconciled
from tests.support.tcp_proxy import CuttableProxy


def _chat(url, key, **body):
    return httpx.post(url + "/api/v1/chat", headers={"Authorization": f"Bearer {key}"},
                      json={"user_prompt": "장애 시험", **body}, timeout=30)


def test_database_outage_fails_closed_keeps_spend_and_recovers(fake_openai, tmp_path):
    direct = create_database("llm_outage")
    migrate(direct)
    proxy = CuttableProxy(("127.0.0.1", 5432))
    port = proxy.start()
    via_proxy = direct.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    proc, api = start_chat_api(via_proxy, fake_openai, tmp_path, AUTH_CACHE_SECONDS="300")
    try:
        key = api.issue_key("outage", daily_usd="5")  # a budgeted key: its holds need the database
        open_key = api.issue_key("outage-uncapped")
        assert _chat(api.url, key).status_code == 200  # also caches the keys' identities
        assert _chat(api.url, open_key).status_code == 200
        proxy.cut()
        started = time.monotonic()
        refused = _chat(api.url, key)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "database_unavailable" and refused.headers["retry-after"]
        assert time.monotonic() - started < 10
        assert httpx.get(api.url + "/readyz").status_code == 503
        # The caller's own key needs no reservation: it is served, and its usage is spooled.
        own = _chat(api.url, key, use_user_api_key=True, openai_api_key="sk-user-during-outage")
        assert own.status_code == 200 and own.json()["key_source"] == "user"
        # No budget applies to this key, so there is nothing to hold: served, its spend spooled.
        uncapped = _chat(api.url, open_key, request_id="")
        assert uncapped.status_code == 200 and uncapped.json()["key_source"] == "server"
        proxy.restore()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and httpx.get(api.url + "/readyz").status_code != 200:
            time.sleep(0.5)
        assert httpx.get(api.url + "/readyz").status_code == 200
        api.flush_ledger()  # the writer replays its spool
        with psycopg.connect(direct) as conn:
            rows = conn.execute("SELECT key_source, outcome FROM spend_ledger ORDER BY id").fetchall()
        assert rows.count(("user", "ok")) == 1, rows
        assert rows.count(("server", "ok")) == 3, rows  # two before the cut, one during it
        assert _chat(api.url, key).status_code == 200
        assert_reconciled(direct)
    finally:
        stop(proc)
        proxy.cut()
        drop_database(direct)


def test_sigterm_with_open_streams_loses_no_spend(fake_openai, tmp_path):
    url = create_database("llm_sigterm")
    migrate(url)
    proc, api = start_chat_api(url, fake_openai, tmp_path)
    try:
        key = api.issue_key("sigterm")

        async def streams():
            async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"},
                                         timeout=30) as client:
                async def one(i):
                    chunks = 0
                    try:
                        async with client.stream("POST", "/v1/chat/completions", json={
                                "model": "fake-stream-slow", "stream": True,
                                "messages": [{"role": "user", "content": f"s{i}"}]}) as r:
                            async for _ in r.aiter_lines():
                                chunks += 1
                                if chunks == 3 and i == 0:
                                    proc.send_signal(signal.SIGTERM)
                    except httpx.HTTPError:
                        pass
                    return chunks
                return await asyncio.gather(*[one(i) for i in range(10)])

        asyncio.run(streams())
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after draining
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT outcome, estimated FROM spend_ledger").fetchall()
        assert len(rows) == 10, rows
        assert_reconciled(url)
    finally:
        stop(proc)
        drop_database(url)


def test_per_key_request_and_token_allowances_answer_429_with_retry_after(fake_openai, pg_url, tmp_path):
    proc, api = start_chat_api(pg_url, fake_openai, tmp_path, RATE_LIMIT_PER_MINUTE="3", TOKENS_PER_MINUTE="400")
    try:
        key = api.issue_key("allowances")
        while time.monotonic() % 60 > 50:  # the allowance is per clock minute: don't straddle two
            time.sleep(1)
        assert _chat(api.url, key, max_tokens=100).status_code == 200
        big = _chat(api.url, key, max_tokens=500)  # 500 more tokens than the minute allows
        assert big.status_code == 429 and big.json()["code"] == "rate_limited" and big.headers["retry-after"]
        assert "토큰" in big.json()["error"]
        assert _chat(api.url, key, max_tokens=10).status_code == 200
        flood = _chat(api.url, key, max_tokens=10)  # the fourth request in the minute
        assert flood.status_code == 429 and "요청" in flood.json()["error"]
    finally:
        stop(proc)
