"""The request log is written by the pipeline itself: a scripted mix of real HTTP requests
to a real chat-api process (its own database) shows up in GET /admin/v1/requests and the
overview exactly as the clients saw it — one entry per request, refusals included, a stream
logged when it ends, an own-key → server-key fallback one request (with two ledger rows)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import stop

RATE = 3  # requests per key per minute (a fixed calendar minute)


@pytest.fixture(scope="module")
def api(fake_openai: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatApiProcess]:
    url = create_database("llm_reqlog")
    migrate(url)
    proc, api = start_chat_api(url, fake_openai, tmp_path_factory.mktemp("reqlog"),
                               RATE_LIMIT_PER_MINUTE=str(RATE), MAX_BODY_BYTES="20000")
    yield api
    stop(proc)
    drop_database(url)


def _chat(api: ChatApiProcess, key: str | None, body: dict[str, Any] | bytes,
          headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    if isinstance(body, bytes):
        return httpx.post(api.url + "/v1/chat/completions", content=body,
                          headers={**sent, "Content-Type": "application/json"}, timeout=30)
    return httpx.post(api.url + "/v1/chat/completions", json=body, headers=sent, timeout=30)


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def _logged(admin: httpx.Client, expected: int) -> dict[str, Any]:
    """The request log once it holds ``expected`` entries (a stream's entry is written when
    its relay finishes, just after the client read the last byte): bounded wait."""
    deadline = time.monotonic() + 15
    while True:
        admin.post("/admin/v1/ledger/flush").raise_for_status()
        page: dict[str, Any] = admin.get("/admin/v1/requests", params={"page_size": 100}).json()
        if page["total"] >= expected or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


def test_every_client_request_is_logged_once_as_the_client_saw_it(api: ChatApiProcess) -> None:
    admin = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.admin_token}"}, timeout=30)
    plain, plain_id = api.new_key_and_id("plain")
    own, own_id = api.new_key_and_id("own-key")
    big, _ = api.new_key_and_id("big")
    eager, eager_id = api.new_key_and_id("eager")
    poor = admin.post("/admin/v1/keys", json={"name": "poor", "daily_limit_usd": "0.000001"}).json()

    seen: list[int] = []
    seen.append(_chat(api, plain, _body("안녕")).status_code)  # 200
    with httpx.stream("POST", api.url + "/v1/chat/completions", json=_body("흘려 주세요", stream=True),
                      headers={"Authorization": f"Bearer {plain}"}, timeout=30) as streamed:
        streamed.read()
        seen.append(streamed.status_code)  # 200, logged when the stream ends
    seen.append(_chat(api, plain, {"model": "gpt-4o-mini"}).status_code)  # 400: no messages
    # 400s until the allowance runs out: RATE of them, or up to twice that if the burst
    # crosses a minute boundary, then a 429
    for _ in range(2 * RATE + 1):
        seen.append(_chat(api, eager, {"model": "gpt-4o-mini"}).status_code)
        if seen[-1] != 400:
            break
    burst = len(seen) - 3
    seen.append(_chat(api, "sk-not-a-client-key", _body("누구?")).status_code)  # 401
    seen.append(_chat(api, poor["key"], _body("예산 밖")).status_code)  # 402
    seen.append(_chat(api, big, b'{"model": "gpt-4o-mini", "pad": "' + b"x" * 30_000 + b'"}').status_code)  # 413
    fallback = _chat(api, own, _body("대신 내 주세요"), {"X-OpenAI-Api-Key": "sk-invalid-user-key-0001"})
    seen.append(fallback.status_code)  # 200 on the server key
    assert seen == [200, 200, 400] + [400] * (burst - 1) + [429, 401, 402, 413, 200]
    assert RATE + 1 <= burst <= 2 * RATE + 1
    assert fallback.headers["x-llm-fallback-reason"] == "user_key_rejected"

    page = _logged(admin, len(seen))
    assert page["total"] == len(seen)
    items = list(reversed(page["items"]))  # oldest first, as sent
    assert [i["status"] for i in items] == seen
    assert [i["error_code"] for i in items] == [None, None, "invalid_field"] + ["invalid_field"] * (burst - 1) + [
        "rate_limited", "invalid_client_key", "budget_exceeded", "body_too_large", None]
    assert [i["client_key_id"] for i in items[:3]] == [plain_id] * 3
    assert {i["client_key_id"] for i in items[3:3 + burst]} == {eager_id}
    assert [i["client_key_id"] for i in items[-4:]] == [None, poor["item"]["id"], items[-2]["client_key_id"], own_id]
    assert items[-2]["client_key_id"] is not None  # 413: the key was known before the body was read
    assert {i["route"] for i in items} == {"/v1/chat/completions"}
    answered = [items[0], items[1], items[-1]]
    assert all(i["key_source"] == "server" and i["cost_usd"] not in (None, "0.00000000") for i in answered)
    assert items[-1]["fallback_reason"] == "user_key_rejected" and items[0]["fallback_reason"] is None
    assert all(i["model"] == "gpt-4o-mini" or i["model"].startswith("gpt-4o-mini") for i in answered)
    # the ledger knows the answered requests by the ids the log shows
    assert admin.get(f"/admin/v1/requests/{items[-1]['request_id']}").json()["item"]["status"] == 200

    overview = admin.get("/admin/v1/overview").json()
    errors = sum(1 for status in seen if status >= 400)
    assert errors == len(seen) - 3
    assert (overview["today"]["requests"], overview["today"]["errors"]) == (len(seen), errors)
    assert (overview["month"]["requests"], overview["month"]["errors"]) == (len(seen), errors)
    assert overview["last_15m"]["requests"] == len(seen)
    assert overview["last_15m"]["by_class"] == {"2xx": 3, "4xx": errors}
    assert admin.get("/admin/v1/requests", params={"status": "402"}).json()["total"] == 1
    refused = next(k for k in admin.get("/admin/v1/keys").json()["items"] if k["id"] == poor["item"]["id"])
    assert refused["refused_today"] == 1
    # admin calls are not client requests: none of the above added an entry
    assert admin.get("/admin/v1/requests").json()["total"] == len(seen)


@pytest.fixture(scope="module")
def watched(fake_openai: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChatApiProcess, Any]]:
    """A chat-api whose alerts go to a local webhook listener, without upstream retries."""
    from tests.services.test_operator_truth import WebhookListener

    listener = WebhookListener()
    url = create_database("llm_circuit")
    migrate(url)
    proc, api = start_chat_api(url, fake_openai, tmp_path_factory.mktemp("circuit"), UPSTREAM_MAX_RETRIES="0",
                               ALERT_WEBHOOK_URL=listener.url, ALERT_ERROR_RATE="1")
    yield api, listener
    stop(proc)
    drop_database(url)
    listener.close()


def test_the_upstream_circuit_opening_alerts_the_operator_once(watched: tuple[ChatApiProcess, Any]) -> None:
    """One client's failures open its own circuit only; a second client failing too opens the
    server key's shared circuit, and that is what reaches the operator, once, naming the upstream
    ("default" without UPSTREAMS_FILE)."""
    api, listener = watched
    first, second = api.new_key("circuit-a"), api.new_key("circuit-b")

    def code(key: str) -> str:
        error_code: str = _chat(api, key, {**_body("고장"), "model": "fake-500"}).json()["error"]["code"]
        return error_code

    codes = [code(first) for _ in range(6)]
    assert "upstream_circuit_open" not in codes[:5] and codes[5] == "upstream_circuit_open", codes
    assert code(second) != "upstream_circuit_open"  # its own failure, sent upstream: now 2 clients failed
    assert code(second) == "upstream_circuit_open"  # the shared circuit is open for everyone
    received = listener.wait_for(lambda r: any(a.get("kind") == "circuit" for a in r))
    circuit = [a for a in received if a.get("kind") == "circuit"]
    assert len(circuit) == 1 and circuit[0]["upstream"] == "default" and circuit[0]["detail"] == "shared circuit"
    assert "sk-" not in str(received)  # no key in the alert
