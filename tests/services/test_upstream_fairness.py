"""One client cannot cost another its answers: the circuit breaker counts upstream failures,
not one client's slow generations, and no client holds more than its share of upstream calls.

Real processes: chat_api on Postgres in front of its own fake OpenAI server, which is slow
(model ``fake-slow``: 30 s, beyond UPSTREAM_TIMEOUT_SECONDS) or broken (``fake-500``) only for
the requests that ask for it.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import psycopg
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import start_fake_openai, stop


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    proc, url = start_fake_openai()
    yield url
    stop(proc)


def _api(pg_url: str, fake_url: str, tmp_path_factory, **env: str) -> Iterator[ChatApiProcess]:
    proc, api = start_chat_api(pg_url, fake_url, tmp_path_factory.mktemp("fairness"), **env)
    yield api
    stop(proc)


@pytest.fixture(scope="module")
def short_timeout_api(pg_url, fake_url, tmp_path_factory) -> Iterator[ChatApiProcess]:
    yield from _api(pg_url, fake_url, tmp_path_factory, UPSTREAM_TIMEOUT_SECONDS="2", UPSTREAM_MAX_RETRIES="0")


@pytest.fixture(scope="module")
def shared_api(pg_url, fake_url, tmp_path_factory) -> Iterator[ChatApiProcess]:
    yield from _api(pg_url, fake_url, tmp_path_factory, UPSTREAM_TIMEOUT_SECONDS="8", UPSTREAM_MAX_RETRIES="0",
                    UPSTREAM_MAX_CONNECTIONS="8", UPSTREAM_CLIENT_SHARE="0.25")


@pytest.fixture(scope="module")
def circuit_api(pg_url, fake_url, tmp_path_factory) -> Iterator[ChatApiProcess]:
    # its own process: no other test's calls still in flight count towards its circuit
    yield from _api(pg_url, fake_url, tmp_path_factory, UPSTREAM_MAX_RETRIES="0", CIRCUIT_THRESHOLD="5",
                    CIRCUIT_MIN_CLIENTS="2", CIRCUIT_COOLDOWN_SECONDS="2")


def _chat(api: ChatApiProcess, key: str, model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "안녕하세요"}]}, timeout=60)


def _code(r: httpx.Response) -> str | None:
    return (r.json().get("error") or {}).get("code")


def _seen(fake_url: str, model: str) -> int:
    seen = httpx.get(fake_url.rsplit("/v1", 1)[0] + "/_fake/requests").json()
    return sum(1 for s in seen if isinstance(s["body"], dict) and s["body"].get("model") == model)


def _hold_open(api: ChatApiProcess, key: str, model: str) -> socket.socket:
    """Sends a chat request on a raw socket and leaves it waiting for its answer."""
    host, port = api.url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "느린 요청"}]})
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    return sock


def _wait_until(condition, what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_one_clients_slow_generations_never_open_the_circuit_for_another(short_timeout_api):
    api = short_timeout_api
    key_a, key_b = api.issue_key("slow-a"), api.issue_key("fast-b")
    for _ in range(5):  # five generations slower than UPSTREAM_TIMEOUT_SECONDS
        r = _chat(api, key_a, "fake-slow")
        assert r.status_code == 504 and _code(r) == "upstream_timeout", r.text
    # A's own circuit is open: A fails fast instead of tying up more upstream connections ...
    r = _chat(api, key_a, "fake-slow")
    assert r.status_code == 503 and _code(r) == "upstream_circuit_open" and int(r.headers["retry-after"]) >= 1
    # ... and B, on the same server key, is served every time.
    statuses = [_chat(api, key_b).status_code for _ in range(20)]
    assert statuses == [200] * 20
    r = _chat(api, key_a)  # A's own circuit stays open for its cooldown, whatever the model
    assert r.status_code == 503 and _code(r) == "upstream_circuit_open"


def test_a_client_holds_at_most_its_share_of_upstream_calls(shared_api, fake_url):
    api = shared_api
    key_a, key_b = api.issue_key("greedy-a"), api.issue_key("other-b")
    before = _seen(fake_url, "fake-slow")
    held = [_hold_open(api, key_a, "fake-slow") for _ in range(2)]  # 2 = ceil(8 × 0.25)
    try:
        _wait_until(lambda: _seen(fake_url, "fake-slow") == before + 2, "A's two calls to reach the upstream")
        r = _chat(api, key_a, "fake-slow")
        assert r.status_code == 429 and _code(r) == "too_many_concurrent_requests", r.text
        assert r.headers["retry-after"] == "1"
        assert _seen(fake_url, "fake-slow") == before + 2  # the refused call never went upstream
        r = httpx.post(api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {key_a}"}, timeout=30,
                       json={"user_prompt": "하나 더", "model": "fake-slow"})
        assert r.status_code == 429 and r.json()["code"] == "too_many_concurrent_requests"
        # the refusals are in the ledger (their budget holds settled with them), like any call
        # that did not go through
        with psycopg.connect(api.pg_url, autocommit=True) as conn:
            key_id = conn.execute("SELECT id FROM client_keys WHERE name = 'greedy-a'").fetchone()[0]

            def recorded() -> bool:
                return conn.execute("SELECT count(*) FROM spend_ledger WHERE client_key_id = %s AND error_code = "
                                    "'too_many_concurrent_requests'", (key_id,)).fetchone()[0] == 2

            _wait_until(recorded, "the refusals to reach the ledger")
        assert [_chat(api, key_b).status_code for _ in range(5)] == [200] * 5
    finally:
        for sock in held:
            sock.close()


def test_failures_from_several_clients_open_the_shared_circuit_then_one_probe_closes_it(circuit_api):
    api = circuit_api
    key_c, key_d, key_e = (api.issue_key(n) for n in ("broken-c", "broken-d", "bystander-e"))
    for key in (key_c, key_c, key_c, key_d, key_d):  # a real outage: several clients fail
        r = _chat(api, key, "fake-500")
        assert r.status_code >= 500 and _code(r) != "upstream_circuit_open", r.text
    r = _chat(api, key_e)
    assert r.status_code == 503 and _code(r) == "upstream_circuit_open", r.text
    assert 1 <= int(r.headers["retry-after"]) <= 2
    # After the cooldown the next call is the probe; it succeeds and closes the circuit.
    _wait_until(lambda: _chat(api, key_e).status_code == 200, "the half-open probe to close the circuit")
    assert [_chat(api, key).status_code for key in (key_c, key_d, key_e)] == [200] * 3
