"""No client reaches another's context through the Responses API (issue 13): a
``previous_response_id`` or ``conversation`` is honoured only for objects the calling client
created through the gateway, and anonymous callers get no stored context at all. Each test
asserts both the answer and that nothing reached the upstream. Real chat-api process (with
ALLOW_ANONYMOUS=true), real Postgres, the fake upstream."""
from __future__ import annotations

import uuid

import httpx
import pytest


def _respond(api, key: str | None, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(api.url + "/v1/responses", json={"model": "gpt-4o-mini", **body}, headers=headers, timeout=30)


@pytest.fixture
def a_response(chat_api) -> tuple[str, str]:
    """Client A's key and a response A created (its id recorded before the answer)."""
    key = chat_api.new_key("owner-a")
    r = _respond(chat_api, key, input="A의 비밀: 카드 끝자리 4242")
    assert r.status_code == 200, r.text
    return key, r.json()["id"]


def test_the_owner_may_chain_on_its_own_response(chat_api, a_response) -> None:
    key, response_id = a_response
    r = _respond(chat_api, key, input="이어서", previous_response_id=response_id)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("field", ["previous_response_id", "conversation"])
def test_another_client_cannot_name_the_response(chat_api, a_response, field: str) -> None:
    _, response_id = a_response
    other = chat_api.new_key("intruder-b")
    chat_api.clear_fake()
    r = _respond(chat_api, other, input="A가 뭐라고 했지?", **{field: response_id})
    assert r.status_code == 404, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("response_not_found", field)
    assert chat_api.fake_requests() == []


@pytest.mark.parametrize("value", ["resp_" + "0" * 24, "conv_does_not_exist", {"id": "conv_x"}])
def test_unknown_objects_are_not_forwarded(chat_api, client_key, value) -> None:
    chat_api.clear_fake()
    field = "previous_response_id" if isinstance(value, str) and value.startswith("resp_") else "conversation"
    r = _respond(chat_api, client_key, input="?", **{field: value})
    assert r.status_code == 404, r.text
    assert chat_api.fake_requests() == []


@pytest.mark.parametrize("value", [5, [], {"id": 7}, ""])
def test_malformed_references_are_a_400(chat_api, client_key, value) -> None:
    chat_api.clear_fake()
    r = _respond(chat_api, client_key, input="?", previous_response_id=value)
    assert r.status_code == 400, r.text
    assert chat_api.fake_requests() == []


def test_anonymous_callers_cannot_chain_even_on_an_anonymous_response(chat_api) -> None:
    r = _respond(chat_api, None, input="익명 1")
    assert r.status_code == 200, r.text
    chat_api.clear_fake()
    r = _respond(chat_api, None, input="익명 2", previous_response_id=r.json()["id"])
    assert r.status_code == 404, r.text
    assert chat_api.fake_requests() == []


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/input_items"), ("POST", "/cancel"),
                                               ("DELETE", "")])
def test_an_anonymous_caller_cannot_reach_an_anonymous_response(chat_api, method: str, suffix: str) -> None:
    # Anonymous callers cannot be told apart: the one who asks may not be the one who
    # created it, so no stored response is theirs, even one made anonymously.
    created = _respond(chat_api, None, input="익명의 비밀: 초록 우체통")
    assert created.status_code == 200, created.text
    chat_api.flush_ledger()  # its row (the owner record) is stored: the refusal is the rule, not a miss
    chat_api.clear_fake()
    r = httpx.request(method, f"{chat_api.url}/v1/responses/{created.json()['id']}{suffix}", timeout=30)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "response_not_found"
    assert "초록 우체통" not in r.text
    assert chat_api.fake_requests() == []


def test_two_anonymous_callers_with_one_request_id_do_not_share_context(chat_api) -> None:
    # Ordinary text, not PII: the guard masks card numbers before a turn is stored, so a
    # secret of that kind would never reach the upstream even if history were replayed.
    conversation = "shared-" + uuid.uuid4().hex[:8]
    first = httpx.post(chat_api.url + "/api/v1/chat", timeout=30,
                       json={"request_id": conversation, "user_prompt": "기억해: 노란 자전거"})
    assert first.status_code == 200, first.text
    chat_api.clear_fake()
    second_prompt = "앞에서 기억하라고 한 게 뭐였지?"
    second = httpx.post(chat_api.url + "/api/v1/chat", timeout=30,
                        json={"request_id": conversation, "user_prompt": second_prompt})
    assert second.status_code == 200, second.text
    [sent] = chat_api.fake_requests()
    assert "노란 자전거" not in str(sent["body"])
    # Exactly the second caller's own turn went upstream: no replayed user or assistant turn.
    # The original dialect goes upstream as a Responses request (``input``).
    assert [m for m in sent["body"]["input"] if m["role"] not in ("system", "developer")] == [
        {"role": "user", "content": second_prompt}]


def test_a_client_with_a_key_still_gets_its_own_history(chat_api) -> None:
    key = chat_api.new_key("history-owner")
    conversation = "mine-" + uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=headers, timeout=30,
                   json={"request_id": conversation, "user_prompt": "기억해: 파란 우산"})
    assert r.status_code == 200
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=headers, timeout=30,
                   json={"request_id": conversation, "user_prompt": "무엇을 기억하라고 했지?"})
    assert r.status_code == 200
    [sent] = chat_api.fake_requests()
    assert "파란 우산" in str(sent["body"])


def test_another_clients_idempotency_key_replays_nothing_of_theirs(chat_api) -> None:
    """Client B sends A's Idempotency-Key with A's very body: B's own request runs (upstream
    called, B's own answer); A's stored answer is never handed to B."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "A의 멱등 요청"}]}
    idem = "shared-idem-" + uuid.uuid4().hex[:8]
    a, b = chat_api.new_key("idem-a"), chat_api.new_key("idem-b")
    first = httpx.post(chat_api.url + "/v1/chat/completions", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {a}", "Idempotency-Key": idem})
    assert first.status_code == 200, first.text
    chat_api.clear_fake()
    theirs = httpx.post(chat_api.url + "/v1/chat/completions", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {b}", "Idempotency-Key": idem})
    assert theirs.status_code == 200, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert len(chat_api.fake_requests()) == 1


def test_anonymous_callers_never_get_each_others_idempotent_answers(chat_api) -> None:
    """Anonymous callers cannot be told apart: an Idempotency-Key one of them used must not
    hand another the stored answer (the original dialect, which anonymous callers use)."""
    idem = "anon-idem-" + uuid.uuid4().hex[:8]
    body = {"user_prompt": "익명 멱등: 내 주문 메모는 '초록 대문 집'"}
    first = httpx.post(chat_api.url + "/api/v1/chat", json=body, headers={"Idempotency-Key": idem}, timeout=30)
    assert first.status_code == 200, first.text
    chat_api.clear_fake()
    second = httpx.post(chat_api.url + "/api/v1/chat", json=body, headers={"Idempotency-Key": idem}, timeout=30)
    assert second.status_code == 200, second.text
    assert "idempotent-replayed" not in second.headers
    assert len(chat_api.fake_requests()) == 1


def test_a_key_issued_again_under_a_revoked_keys_name_reaches_none_of_its_objects(chat_api) -> None:
    """A name is a label, not an identity: a key revoked and issued again under the same name
    (a departed team member's, say) is another client. It neither gets the revoked key's
    history replayed nor reaches its stored responses, on any route that takes an id."""
    admin = {"Authorization": f"Bearer {chat_api.admin_token}"}
    name = "team-" + uuid.uuid4().hex[:8]
    old = httpx.post(chat_api.url + "/admin/v1/keys", json={"name": name}, headers=admin).json()
    session = "s-" + uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {old['key']}", "X-Session-Id": session}
    r = httpx.post(chat_api.url + "/v1/chat/completions", headers=headers, timeout=30,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "비밀: 초록 고양이"}]})
    assert r.status_code == 200, r.text
    response_id = _respond(chat_api, old["key"], input="저장된 응답").json()["id"]
    assert httpx.post(chat_api.url + f"/admin/v1/keys/{old['item']['id']}/revoke", headers=admin).status_code == 200
    new = httpx.post(chat_api.url + "/admin/v1/keys", json={"name": name}, headers=admin).json()
    bearer = {"Authorization": f"Bearer {new['key']}"}
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/chat/completions", headers={**bearer, "X-Session-Id": session}, timeout=30,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "비밀이 뭐였지?"}]})
    assert r.status_code == 200 and "초록 고양이" not in str(chat_api.fake_requests())
    chat_api.clear_fake()
    for method, suffix in (("GET", ""), ("GET", "/input_items"), ("POST", "/cancel"), ("DELETE", "")):
        r = httpx.request(method, chat_api.url + f"/v1/responses/{response_id}{suffix}", headers=bearer, timeout=30)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "response_not_found")
    assert _respond(chat_api, new["key"], input="이어서", previous_response_id=response_id).status_code == 404
    assert chat_api.fake_requests() == []
