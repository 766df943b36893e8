"""An upstream that answers with something unreadable is never a 500 (issue 12): the client
gets 502 ``upstream_bad_response`` in its dialect's error shape, the request leaves exactly
one ledger row, and on a budgeted key that row is charged the hold (the upstream may have
billed the call), marked estimated. Real chat-api process, real Postgres, the fake upstream
misbehaving on demand."""
from __future__ import annotations

import httpx
import psycopg
import pytest

MARKERS = ["fake:not-json", "fake:array", "fake:bad-usage"]


def _rows(api, key_id: str) -> list[tuple]:
    api.flush_ledger()
    with psycopg.connect(api.pg_url) as conn:
        return conn.execute("SELECT outcome, error_code, cost_nanos, estimated FROM spend_ledger "
                            "WHERE client_key_id = %s", (key_id,)).fetchall()


def _held_key(api, name: str) -> tuple[str, str]:
    key, key_id = api.new_key_and_id(name)
    r = httpx.put(f"{api.url}/admin/v1/keys/{key_id}/budget", json={"daily_limit_usd": "5", "monthly_limit_usd": None},
                  headers={"Authorization": f"Bearer {api.admin_token}"})
    assert r.status_code == 200, r.text
    return key, key_id


CASES = {
    "original": ("/api/v1/chat", lambda text, stream: {"user_prompt": text}),
    "chat.completions": ("/v1/chat/completions", lambda text, stream: {
        "model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]}),
    "responses": ("/v1/responses", lambda text, stream: {"model": "gpt-4o-mini", "stream": stream, "input": text}),
}


def _code(case: str, r: httpx.Response) -> str:
    body = r.json()
    return body["code"] if case == "original" else body["error"]["code"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("marker", MARKERS)
def test_an_unreadable_answer_is_a_502_with_one_charged_row(chat_api, case: str, marker: str) -> None:
    key, key_id = _held_key(chat_api, f"anomaly-{marker}")
    path, body = CASES[case]
    r = httpx.post(chat_api.url + path, json=body(f"{marker} 안녕", False), timeout=30,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 502, r.text
    assert _code(case, r) == "upstream_bad_response"
    assert "retry-after" in r.headers
    [(outcome, error_code, cost, estimated)] = _rows(chat_api, key_id)
    assert (outcome, error_code, estimated) == ("error", "upstream_bad_response", True)
    assert cost > 0  # the hold, not a free release


@pytest.mark.parametrize("case", ["chat.completions", "responses"])
def test_a_stream_dropped_before_its_first_event_is_a_502_not_a_500(chat_api, case: str) -> None:
    key, key_id = _held_key(chat_api, "anomaly-drop")
    path, body = CASES[case]
    r = httpx.post(chat_api.url + path, json=body("fake:drop 안녕", True), timeout=30,
                   headers={"Authorization": f"Bearer {key}", "Accept-Language": "en"})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_bad_response"
    [(outcome, error_code, cost, estimated)] = _rows(chat_api, key_id)
    assert (outcome, error_code, estimated, cost > 0) == ("error", "upstream_bad_response", True, True)


def test_without_a_budget_nothing_is_held_and_the_row_is_still_there(chat_api) -> None:
    key, key_id = chat_api.new_key_and_id("anomaly-unbudgeted")
    r = httpx.post(chat_api.url + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fake:array"}]})
    assert r.status_code == 502
    assert [row[:2] for row in _rows(chat_api, key_id)] == [("error", "upstream_bad_response")]


def _upstream_calls(api, path: str) -> int:
    return sum(1 for seen in api.fake_requests() if seen["path"] == path)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("marker", ["fake:drop", "fake:cut-json"])
def test_a_200_whose_body_breaks_is_charged_once_and_never_sent_again(chat_api, case: str, marker: str) -> None:
    """The upstream said 200: it has done (and billed) the work, whatever happened to the
    body on the way. That is an unreadable answer (502, the hold charged), not a broken
    connection to retry for free: a retry would pay the upstream twice."""
    key, key_id = _held_key(chat_api, f"anomaly-cut-{marker}")
    path, body = CASES[case]
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + path, json=body(f"{marker} 안녕", False), timeout=30,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 502, r.text
    assert _code(case, r) == "upstream_bad_response"
    assert _upstream_calls(chat_api, "/v1/responses") + _upstream_calls(chat_api, "/v1/chat/completions") == 1
    [(outcome, error_code, cost, estimated)] = _rows(chat_api, key_id)
    assert (outcome, error_code, estimated, cost > 0) == ("error", "upstream_bad_response", True, True)


@pytest.mark.parametrize("marker", [*MARKERS[:2], "fake:drop", "fake:cut-json"])
def test_an_unreadable_embeddings_answer_is_charged_its_hold(chat_api, marker: str) -> None:
    """As for a chat turn: an embeddings call the upstream answered unreadably may have been
    billed, so its row is charged the hold (estimated), never released for free."""
    key, key_id = _held_key(chat_api, f"anomaly-embeddings-{marker}")
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/embeddings", timeout=30, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "text-embedding-3-small", "input": f"{marker} 안녕"})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_bad_response"
    assert _upstream_calls(chat_api, "/v1/embeddings") == 1
    [(outcome, error_code, cost, estimated)] = _rows(chat_api, key_id)
    assert (outcome, error_code, estimated, cost > 0) == ("error", "upstream_bad_response", True, True)


@pytest.fixture(scope="module")
def slow_upstream(pg_url, tmp_path_factory):
    """A fake upstream of its own that can be told to think for longer than the gateway
    waits (UPSTREAM_TIMEOUT_SECONDS=1), and a chat-api process in front of it."""
    from tests.services.conftest import start_chat_api
    from tests.support.processes import start_fake_openai, stop

    fake_proc, fake_url = start_fake_openai()
    proc, api = start_chat_api(pg_url, fake_url, tmp_path_factory.mktemp("slow-upstream"),
                               UPSTREAM_TIMEOUT_SECONDS="1", UPSTREAM_MAX_RETRIES="0")
    yield api
    stop(proc)
    stop(fake_proc)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_a_call_the_upstream_took_but_did_not_answer_in_time_is_charged_its_hold(slow_upstream, path: str) -> None:
    """The upstream got the request and is still working on it (and will bill it) when the
    gateway stops waiting: a 504, and the row is charged the hold (estimated), not released
    for free. Otherwise a long generation, asked for again and again, is never paid for."""
    api = slow_upstream
    key, key_id = _held_key(api, "anomaly-read-timeout")
    body = ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "긴 답을 써 줘"}]}
            if path == "/v1/chat/completions" else {"model": "text-embedding-3-small", "input": "긴 글"})
    behaviour = api.fake_url.rsplit("/v1", 1)[0] + "/_fake/behaviour"
    httpx.put(behaviour, json={"first_byte_delay_ms": 3000}).raise_for_status()
    try:
        r = httpx.post(api.url + path, json=body, timeout=30, headers={"Authorization": f"Bearer {key}"})
    finally:
        httpx.delete(behaviour)
    assert r.status_code == 504, r.text
    [(outcome, error_code, cost, estimated)] = _rows(api, key_id)
    assert (outcome, error_code, estimated, cost > 0) == ("error", "upstream_timeout", True, True)
