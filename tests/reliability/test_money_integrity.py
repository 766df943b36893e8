"""Money integrity with real processes on real PostgreSQL: a replica killed with SIGKILL
with calls in flight, a spool poisoned with U+2028 while the database is cut, ids of ~450
characters from the upstream, an Idempotency-Key left in progress by a crash — and after
each, ``llmctl ledger reconcile`` finds the budget counters equal to the ledger.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from chat_api.app import make_app
from chat_api.settings import ChatApiSettings
from tests.adapters.test_repositories import a_record, ledger_rows
from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import start_fake_openai, stop
from tests.support.reconcile import assert_reconciled
from tests.support.tcp_proxy import CuttableProxy

CHAT = "/v1/chat/completions"


def wait_until(condition: Callable[[], object], timeout: float = 30.0, every: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def query(db_url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def database() -> Iterator[str]:
    url = create_database("llm_money")
    migrate(url)
    yield url
    drop_database(url)


def served(api: ChatApiProcess, path: str = CHAT) -> int:
    return sum(1 for r in api.fake_requests() if r["path"] == path and r["method"] == "POST")


def replica(db_url: str, fake: str, data_dir: Path, **env: str) -> tuple[subprocess.Popen, ChatApiProcess]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_chat_api(db_url, fake, data_dir, **env)


# -- SIGKILL with calls in flight ---------------------------------------------------------
@pytest.mark.parametrize("run", [1, 2, 3])
def test_sigkill_with_calls_in_flight_leaves_a_row_for_every_served_call(database, tmp_path, run):
    """Replica A is killed with SIGKILL while calls (plain and streamed; on a budgeted key,
    a key without a budget, and the caller's own OpenAI key) are in flight at the upstream
    and rows wait in its writer's queue. Every call the upstream served ends as a ledger
    row — exact, or orphaned from its hold once replica B sweeps it (charged at the hold,
    nothing for the caller's own key) — and the counters equal the ledger."""
    fake_proc, fake = start_fake_openai(env={"FAKE_LATENCY_MS": "400"})
    a_proc = b_proc = None
    try:
        a_proc, a = replica(database, fake, tmp_path / "a")
        budgeted, uncapped = a.issue_key("sigkill", daily_usd="50"), a.issue_key("sigkill-uncapped")
        sent = 48
        answered: list[int] = []

        def headers(i: int) -> dict[str, str]:
            """A budgeted key, a key without a budget, and the caller's own OpenAI key."""
            if i % 4 == 1:
                return {"Authorization": f"Bearer {uncapped}"}
            if i % 4 == 3:
                return {"Authorization": f"Bearer {uncapped}", "X-OpenAI-Api-Key": "sk-user-own-key"}
            return {"Authorization": f"Bearer {budgeted}"}

        async def traffic() -> None:
            async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
                async def one(i: int) -> None:
                    await asyncio.sleep(i * 0.025)
                    body = {"model": "gpt-4o-mini", "max_tokens": 50,
                            "messages": [{"role": "user", "content": f"호출 {run}-{i}"}]}
                    try:
                        if i % 3 == 0:
                            async with client.stream("POST", CHAT, json={**body, "stream": True},
                                                     headers=headers(i)) as r:
                                async for _ in r.aiter_lines():
                                    pass
                        else:
                            r = await client.post(CHAT, json=body, headers=headers(i))
                            if r.status_code == 200:
                                answered.append(i)
                    except httpx.HTTPError:
                        pass  # the replica died under it

                async def killer() -> None:
                    while await asyncio.to_thread(served, a) < sent // 2:
                        await asyncio.sleep(0.02)
                    kill(a_proc)

                await asyncio.gather(killer(), *[one(i) for i in range(sent)])

        asyncio.run(traffic())
        upstream_served = served(a)
        assert 0 < upstream_served < sent
        b_proc, _ = replica(database, fake, tmp_path / "b", STALE_HOLD_SECONDS="2")

        def settled() -> bool:
            open_holds = query(database, "SELECT count(*) FROM budget_reservations")[0][0]
            return open_holds == 0

        assert wait_until(settled, 30), "replica B never swept the dead replica's holds"
        rows = query(database, "SELECT outcome, estimated, charged_nanos, key_source FROM spend_ledger")
        exact = sum(1 for outcome, *_ in rows if outcome == "ok")
        orphaned = sum(1 for outcome, estimated, charged, source in rows
                       if outcome == "orphaned" and estimated and (charged > 0) == (source == "server"))
        lost = max(0, upstream_served - len(rows))
        print(f"\nSIGKILL run {run}: sent {sent}, upstream served {upstream_served}, rows {len(rows)} "
              f"(exact {exact}, orphaned {orphaned}), lost {lost}; {len(answered)} plain calls answered before the kill")
        assert exact + orphaned == len(rows), rows
        assert lost == 0
        assert len(rows) <= sent  # at most one row per request
        assert orphaned > 0  # the kill did catch calls in flight
        assert_reconciled(database)
    finally:
        for proc in (a_proc, b_proc, fake_proc):
            if proc is not None:
                stop(proc)


# -- the U+2028 spool poisoning -----------------------------------------------------------
def test_a_prompt_with_line_separators_spooled_during_an_outage_cannot_poison_the_writer(database, fake_openai,
                                                                                          tmp_path):
    """The issue's first row: a prompt with U+2028 (and U+2029, U+0085) spooled while the
    database is away. Once it is back the record is stored, and every later request leaves
    its row too — across a restart — with /readyz green and the writer up."""
    proxy = CuttableProxy(("127.0.0.1", 5432))
    port = proxy.start()
    via_proxy = database.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    proc, api = replica(via_proxy, fake_openai, tmp_path / "a", AUTH_CACHE_SECONDS="300")
    poison = "독\u2028약\u2029이\u0085다"
    try:
        key = api.issue_key("poison")  # no budget: served while the database is away
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.post(api.url + "/api/v1/chat", headers=auth, json={"user_prompt": "준비"}).status_code == 200
        proxy.cut()
        # A named conversation with its own history: nothing to read, a turn to store.
        during = httpx.post(api.url + "/api/v1/chat", headers=auth, timeout=30, json={
            "request_id": "poisoned-conversation", "user_prompt": poison,
            "conversation_history": [{"role": "user", "content": "앞"}, {"role": "assistant", "content": "뒤"}]})
        assert during.status_code == 200, during.text
        assert httpx.get(api.url + "/readyz").status_code == 503
        proxy.restore()
        assert wait_until(lambda: httpx.get(api.url + "/readyz").status_code == 200, 30)
        api.flush_ledger()  # the writer replays its spool
        assert query(database, "SELECT count(*) FROM turns WHERE prompt = %s", poison)[0][0] == 1
        after = httpx.post(api.url + "/api/v1/chat", headers=auth, json={"user_prompt": "그 다음"})
        assert after.status_code == 200
        api.flush_ledger()
        assert query(database, "SELECT count(*) FROM spend_ledger")[0][0] == 3
        metrics = httpx.get(api.url + "/metrics").text
        assert "llm_gateway_ledger_writer_up 1.0" in metrics
        assert "llm_gateway_ledger_set_aside_records 0.0" in metrics
        stop(proc)
        proc, api = replica(database, fake_openai, tmp_path / "a")  # the same spool file, direct this time
        assert httpx.post(api.url + "/api/v1/chat", headers=auth, json={"user_prompt": "재시작 후"}).status_code == 200
        api.flush_ledger()
        assert query(database, "SELECT count(*) FROM spend_ledger")[0][0] == 4
        [(reply,)] = query(database, "SELECT reply FROM turns WHERE prompt = %s", poison)
        assert "\u2028" in reply  # the fake echoes the prompt: the reply round-tripped too
        assert_reconciled(database)
    finally:
        stop(proc)
        proxy.cut()


# -- long ids from the upstream -----------------------------------------------------------
def test_ids_of_450_characters_from_the_upstream_are_stored_and_charged(database, fake_openai, tmp_path):
    """An OpenAI-compatible proxy answering with ~450-character ids and a 150-character
    model name: every row is stored (none refused or set aside) and the budget moves."""
    proc, api = replica(database, fake_openai, tmp_path / "a")
    try:
        key = api.issue_key("long-ids", daily_usd="5")
        auth = {"Authorization": f"Bearer {key}"}
        r1 = httpx.post(api.url + "/v1/responses", headers=auth, timeout=30,
                        json={"model": "gpt-4o-mini", "input": "fake:long-ids 응답"})
        r2 = httpx.post(api.url + CHAT, headers=auth, timeout=30,
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fake:long-ids 챗"}]})
        assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
        long_id = r1.json()["id"]
        assert len(long_id) > 440
        api.flush_ledger()
        assert query(database, "SELECT count(*) FROM spend_ledger")[0][0] == 2
        rows = query(database, "SELECT response_id, model, charged_nanos FROM spend_ledger ORDER BY id")
        assert rows[0][0] == long_id and len(rows[1][1]) == 150
        assert all(charged > 0 for _, _, charged in rows)
        [(spent,)] = query(database, "SELECT spent_nanos FROM budget_counters WHERE scope LIKE 'key:%%' "
                                     "AND period LIKE 'd:%%'")
        assert spent == sum(charged for _, _, charged in rows)
        metrics = httpx.get(api.url + "/metrics").text
        assert "llm_gateway_ledger_set_aside_records 0.0" in metrics
        assert_reconciled(database)
    finally:
        stop(proc)


# -- an Idempotency-Key stuck by a crash --------------------------------------------------
def test_an_idempotency_key_left_in_progress_by_a_crash_can_be_retried(database, tmp_path):
    """The replica dies while the keyed request is at the upstream. Until
    IDEMPOTENCY_PENDING_SECONDS pass a retry is told the request is in progress (the
    adapter test checks the boundary exactly, with a given clock); then one
    retry runs it again (the upstream served it twice: two rows, one orphaned), and later
    retries replay that answer."""
    fake_proc, fake = start_fake_openai(env={"FAKE_LATENCY_MS": "1500"})
    a_proc = b_proc = None
    try:
        a_proc, a = replica(database, fake, tmp_path / "a")
        key = a.issue_key("idem", daily_usd="5")
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-42"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "한 번만"}]}

        async def first() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                async def call() -> None:
                    try:
                        await client.post(a.url + CHAT, headers=headers, json=body)
                    except httpx.HTTPError:
                        pass

                async def killer() -> None:
                    while await asyncio.to_thread(served, a) < 1:
                        await asyncio.sleep(0.02)
                    kill(a_proc)
                await asyncio.gather(call(), killer())

        asyncio.run(first())
        b_proc, b = replica(database, fake, tmp_path / "b", IDEMPOTENCY_PENDING_SECONDS="8", STALE_HOLD_SECONDS="2")
        [(age,)] = query(database, "SELECT extract(epoch FROM now() - created_at) FROM idempotency_keys")
        if age < 7:  # B started quickly enough to see the claim still in progress (else: expired already)
            stuck = httpx.post(b.url + CHAT, headers=headers, json=body, timeout=30)
            assert stuck.status_code == 422 and stuck.json()["error"]["code"] == "idempotency_in_progress", stuck.text

        def retried() -> httpx.Response | None:
            r = httpx.post(b.url + CHAT, headers=headers, json=body, timeout=30)
            return r if r.status_code != 422 else None

        answer = wait_until(retried, 20, every=0.5)
        assert answer is not None and answer.status_code == 200, answer
        assert served(b) == 2
        replay = httpx.post(b.url + CHAT, headers=headers, json=body, timeout=30)
        assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == answer.json() and served(b) == 2
        assert wait_until(lambda: query(database, "SELECT count(*) FROM budget_reservations")[0][0] == 0, 20)
        outcomes = sorted(o for (o,) in query(database, "SELECT outcome FROM spend_ledger"))
        assert outcomes == ["ok", "orphaned"]
        assert_reconciled(database)
    finally:
        for proc in (a_proc, b_proc, fake_proc):
            if proc is not None:
                stop(proc)


# -- background responses -----------------------------------------------------------------
def test_background_responses_are_settled_from_their_final_usage_across_a_restart(database, tmp_path):
    """``background: true`` is answered ``queued`` with ``usage: null``. The hold stays
    open (not swept as stale) while the response is pending; the pending id survives a
    SIGKILL, and the next replica polls it to completion and stores its row priced from the
    final usage. A GET by id of a finished response settles it at once."""
    fake_proc, fake = start_fake_openai()
    a_proc = b_proc = None
    try:
        # A would first look after 3 s: it is killed before that.
        a_proc, a = replica(database, fake, tmp_path / "a", BACKGROUND_POLL_SECONDS="3")
        key = a.issue_key("background", daily_usd="5")
        auth = {"Authorization": f"Bearer {key}"}
        queued = httpx.post(a.url + "/v1/responses", headers=auth, timeout=30,
                            json={"model": "gpt-4o-mini", "input": "오래 걸리는 일", "background": True})
        assert queued.status_code == 200 and queued.json()["status"] == "queued" and queued.json()["usage"] is None
        rid = queued.json()["id"]
        assert query(database, "SELECT count(*) FROM spend_ledger")[0][0] == 0
        assert query(database, "SELECT count(*) FROM budget_reservations")[0][0] == 1
        assert query(database, "SELECT response_id FROM background_responses") == [(rid,)]
        # The request's PII policy waits with it: the reply stored later is masked like a turn's.
        [(pending,)] = query(database, "SELECT record FROM background_responses")
        assert json.loads(pending)["pii_policy"] == "mask"
        kill(a_proc)

        b_proc, b = replica(database, fake, tmp_path / "b", BACKGROUND_POLL_SECONDS="0.5", STALE_HOLD_SECONDS="1")
        assert wait_until(lambda: query(database, "SELECT count(*) FROM background_responses")[0][0] == 0, 30)
        [(outcome, estimated, input_tokens, output_tokens, charged, response_id)] = query(
            database, "SELECT outcome, estimated, input_tokens, output_tokens, charged_nanos, response_id "
                      "FROM spend_ledger")
        assert (outcome, estimated, response_id) == ("ok", False, rid)
        assert input_tokens > 0 and output_tokens == 12 and charged > 0
        assert query(database, "SELECT count(*) FROM budget_reservations")[0][0] == 0
        gets = [r for r in b.fake_requests() if r["method"] == "GET" and r["path"] == f"/v1/responses/{rid}"]
        assert len(gets) >= 2  # queued → in_progress → completed: polled until terminal
        assert_reconciled(database)
        stop(b_proc)

        b_proc, b = replica(database, fake, tmp_path / "b", BACKGROUND_POLL_SECONDS="300")
        second = httpx.post(b.url + "/v1/responses", headers=auth, timeout=30,
                            json={"model": "gpt-4o-mini", "input": "조회로 정산", "background": True}).json()
        first_look = httpx.get(b.url + f"/v1/responses/{second['id']}", headers=auth, timeout=30)
        assert first_look.status_code == 200 and first_look.json()["status"] == "in_progress"
        assert query(database, "SELECT count(*) FROM spend_ledger WHERE response_id = %s", second["id"])[0][0] == 0
        done = httpx.get(b.url + f"/v1/responses/{second['id']}", headers=auth, timeout=30)
        assert done.json()["status"] == "completed"
        [(outcome, charged)] = query(database, "SELECT outcome, charged_nanos FROM spend_ledger "
                                               "WHERE response_id = %s", second["id"])
        assert outcome == "ok" and charged > 0
        assert query(database, "SELECT count(*) FROM budget_reservations")[0][0] == 0
        assert_reconciled(database)
    finally:
        for proc in (a_proc, b_proc, fake_proc):
            if proc is not None:
                stop(proc)


# -- a ledger writer that dies --------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the kill, on purpose
async def test_a_dead_ledger_writer_turns_readyz_red_and_is_restarted(database, tmp_path):
    """The app's own lifespan runs (the supervisor included); the writer thread is killed
    for real (an asynchronous SystemExit inside it). /readyz answers 503 naming the writer,
    the supervisor restarts it, /readyz is green again, the restart is counted, and rows
    are written again."""
    app = make_app(ChatApiSettings(database_url=database, admin_token="admin-" + "a" * 40, key_hash_secret="h" * 40,
                                   data_dir=tmp_path, openai_api_key="sk-server-0123456789abcdef"))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://chat") as client:
        assert (await client.get("/readyz")).status_code == 200
        ledger = app.state.container.ledger
        thread = ledger._thread
        assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                          ctypes.py_object(SystemExit)) == 1
        await asyncio.to_thread(thread.join, 5)
        down = await client.get("/readyz")
        assert down.status_code == 503 and down.json()["ledger_writer"] == "down"
        assert "llm_gateway_ledger_writer_up 0.0" in (await client.get("/metrics")).text

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200
        deadline = time.monotonic() + 10
        while not await ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await ready()
        metrics = (await client.get("/metrics")).text
        assert "llm_gateway_ledger_writer_up 1.0" in metrics
        assert "llm_gateway_ledger_writer_restarts_total 1.0" in metrics
        record = a_record()
        await ledger.record(record)
        assert len(ledger_rows(ledger.engine, record.request_id)) == 1


# -- an upstream's NUL bytes and negative usage -------------------------------------------
def test_nul_bytes_and_negative_usage_from_the_upstream_still_leave_charged_rows(database, fake_openai, tmp_path):
    """The issue's anomaly row: a NUL in the reply and the model name, negative usage. Each
    call leaves its row (NUL removed, flagged), the turn is stored, and negative usage is
    charged at the hold — the worst case admitted — not as a free call."""
    proc, api = replica(database, fake_openai, tmp_path / "a")
    try:
        key = api.issue_key("anomalies", daily_usd="5")
        auth = {"Authorization": f"Bearer {key}"}
        nul = httpx.post(api.url + CHAT, headers={**auth, "X-Session-Id": "nul-session"}, timeout=30,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fake:nul 보내기"}]})
        negative = httpx.post(api.url + CHAT, headers=auth, timeout=30, json={
            "model": "gpt-4o-mini", "max_tokens": 100,
            "messages": [{"role": "user", "content": "fake:negative-usage"}]})
        assert nul.status_code == 200 and negative.status_code == 200, (nul.text, negative.text)
        api.flush_ledger()
        assert query(database, "SELECT count(*) FROM spend_ledger")[0][0] == 2
        rows = query(database, "SELECT model, anomalies, estimated, input_tokens, output_tokens, cost_nanos, "
                               "charged_nanos FROM spend_ledger ORDER BY id")
        assert rows[0][0] == "gpt-4o-mini-2024-07-18" and rows[0][1] == "nul_removed" and rows[0][6] > 0
        model, anomalies, estimated, inp, out, cost, charged = rows[1]
        assert (anomalies, estimated, inp, out, cost) == ("usage_negative", True, 0, 0, 0)
        assert charged > 0  # the hold: prompt estimate + 100 output tokens at the output price
        [(reply,)] = query(database, "SELECT reply FROM turns")
        assert reply == "널바이트"
        assert "llm_gateway_ledger_set_aside_records 0.0" in httpx.get(api.url + "/metrics").text
        assert_reconciled(database)
    finally:
        stop(proc)
