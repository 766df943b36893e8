"""Rotating a key never cuts its client off from what it made: a successor owns what every key
of its rotation chain created (X-Session-Id / request_id conversations, stored responses), and
nothing of any other key. Real chat-api process on real PostgreSQL, the fake upstream."""
from __future__ import annotations

import uuid

import httpx

from tests.services.conftest import ChatApiProcess


def _bearer(secret: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **extra}


def _chat(api: ChatApiProcess, secret: str, session: str, content: str) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/chat/completions", headers=_bearer(secret, **{"X-Session-Id": session}),
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}, timeout=30)


def _respond(api: ChatApiProcess, secret: str, **body: object) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/responses", headers=_bearer(secret), timeout=30,
                      json={"model": "gpt-4o-mini", **body})


def _rotate(admin: httpx.Client, key_id: str) -> tuple[str, str]:
    r = admin.post(f"/admin/v1/keys/{key_id}/rotate")
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["item"]["id"]


def _reaches(api: ChatApiProcess, secret: str, response_id: str) -> list[int]:
    return [httpx.request(method, f"{api.url}/v1/responses/{response_id}{suffix}", headers=_bearer(secret),
                          timeout=30).status_code for method, suffix in (("GET", ""), ("GET", "/input_items"))]


def test_a_rotated_key_keeps_its_conversations_and_stored_responses(chat_api: ChatApiProcess) -> None:
    """The client rotates a leaked key and carries on: the same X-Session-Id conversation
    continues (the upstream receives the earlier turns, the predecessors' included), and its
    predecessors' responses can be fetched and chained on — through two rotations."""
    session = "rot-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=chat_api.url, headers=_bearer(chat_api.admin_token), timeout=30) as admin:
        made = admin.post("/admin/v1/keys", json={"name": f"회전 소유 {uuid.uuid4().hex[:6]}"})
        made.raise_for_status()
        first, first_id = made.json()["key"], made.json()["item"]["id"]
        assert _chat(chat_api, first, session, "기억해: 보라색 연").status_code == 200
        r0 = _respond(chat_api, first, input="첫 키의 응답")
        assert r0.status_code == 200, r0.text
        chat_api.flush_ledger()

        second, second_id = _rotate(admin, first_id)
        chat_api.clear_fake()
        r = _chat(chat_api, second, session, "무엇을 기억하라고 했지?")
        assert r.status_code == 200, r.text
        [sent] = chat_api.fake_requests()
        assert "보라색 연" in str(sent["body"]["messages"])
        assert _reaches(chat_api, second, r0.json()["id"]) == [200, 200]
        chat_api.clear_fake()
        chained = _respond(chat_api, second, input="이어서", previous_response_id=r0.json()["id"])
        assert chained.status_code == 200, chained.text
        [sent] = chat_api.fake_requests()
        assert sent["body"]["previous_response_id"] == r0.json()["id"]
        r1 = _respond(chat_api, second, input="둘째 키의 응답")
        assert r1.status_code == 200, r1.text
        assert _chat(chat_api, second, session, "기억해: 노란 배").status_code == 200
        chat_api.flush_ledger()

        # the operator finds the conversation under the successor as under the first key
        for key_id in (first_id, second_id):
            listed = admin.get("/admin/v1/conversations", params={"client_key_id": key_id}).json()["items"]
            assert [c["external_id"] for c in listed] == [session], key_id

        third, _ = _rotate(admin, second_id)
        chat_api.clear_fake()
        assert _chat(chat_api, third, session, "두 가지가 뭐였지?").status_code == 200
        [sent] = chat_api.fake_requests()
        assert "보라색 연" in str(sent["body"]["messages"]) and "노란 배" in str(sent["body"]["messages"])
        for response in (r0, r1):
            assert _reaches(chat_api, third, response.json()["id"]) == [200, 200]
            chained = _respond(chat_api, third, input="다시", previous_response_id=response.json()["id"])
            assert chained.status_code == 200, chained.text

    # the revoked predecessors themselves are stopped (403 client_key_revoked)
    for old in (first, second):
        r = _chat(chat_api, old, session, "아직 되나?")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "client_key_revoked")


def test_another_client_reaches_nothing_of_a_rotation_chain(chat_api: ChatApiProcess) -> None:
    """The chain's objects stay its own: another client (with the same session id) gets no
    replayed turn and a 404 response_not_found for its responses, nothing sent upstream."""
    session = "rot-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=chat_api.url, headers=_bearer(chat_api.admin_token), timeout=30) as admin:
        made = admin.post("/admin/v1/keys", json={"name": f"회전 격리 {uuid.uuid4().hex[:6]}"})
        made.raise_for_status()
        first, first_id = made.json()["key"], made.json()["item"]["id"]
        assert _chat(chat_api, first, session, "비밀: 빨간 우체국").status_code == 200
        r0 = _respond(chat_api, first, input="첫 키의 비밀 응답").json()["id"]
        second, _ = _rotate(admin, first_id)
        assert _chat(chat_api, second, session, "비밀: 파란 등대").status_code == 200
        r1 = _respond(chat_api, second, input="둘째 키의 비밀 응답").json()["id"]
        chat_api.flush_ledger()

    other = chat_api.new_key("rot-intruder")
    chat_api.clear_fake()
    for response_id in (r0, r1):
        for method, suffix in (("GET", ""), ("GET", "/input_items"), ("POST", "/cancel"), ("DELETE", "")):
            r = httpx.request(method, f"{chat_api.url}/v1/responses/{response_id}{suffix}", headers=_bearer(other),
                              timeout=30)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "response_not_found")
        r = _respond(chat_api, other, input="훔쳐보기", previous_response_id=response_id)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "response_not_found")
    assert chat_api.fake_requests() == []
    assert _chat(chat_api, other, session, "비밀이 뭐였지?").status_code == 200
    sent = str(chat_api.fake_requests())
    assert "빨간 우체국" not in sent and "파란 등대" not in sent


def test_a_retry_sent_on_the_rotated_key_replays_the_stored_answer(chat_api: ChatApiProcess) -> None:
    """The client retries a request with its Idempotency-Key after rotating the key it was
    sent with: the stored answer comes back, the upstream is not called (nor paid) twice."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "회전 중 재시도"}]}
    idem = "rot-idem-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=chat_api.url, headers=_bearer(chat_api.admin_token), timeout=30) as admin:
        first, first_id = chat_api.new_key_and_id("rot-idem")
        sent = httpx.post(f"{chat_api.url}/v1/chat/completions", json=body, timeout=30,
                          headers=_bearer(first, **{"Idempotency-Key": idem}))
        assert sent.status_code == 200, sent.text
        second, _ = _rotate(admin, first_id)
    chat_api.clear_fake()
    again = httpx.post(f"{chat_api.url}/v1/chat/completions", json=body, timeout=30,
                       headers=_bearer(second, **{"Idempotency-Key": idem}))
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == sent.json()["id"]
    assert chat_api.fake_requests() == []
