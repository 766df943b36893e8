"""The PII guard in the running gateway: every path that sends text upstream is masked
(proven by the fake upstream's request log), what is stored is masked (proven by a dump of
the database), ``block`` sends and stores nothing, and a key's own policy beats the server's.

Two gateways on the same database and fake upstream: the session's (``PII_POLICY`` unset,
so ``mask``) and one started here with ``PII_POLICY=block``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import BIN, ROOT, stop

PHONE, PHONE_B, PHONE_C = "010-2345-6789", "010-9876-5432", "010-3456-7890"
CARD = "4111-1111-1111-1111"
RRN = "900101-1234568"
EMAIL = "kim.minsu@naver.com"
# Each value as it could appear anywhere in a body or a row, separators or not.
RAW = [PHONE, PHONE_B, PHONE_C, CARD, RRN, EMAIL, "01023456789", "01098765432", "01034567890", "4111111111111111",
       "9001011234568", "kim.minsu"]


@pytest.fixture(scope="module")
def blocking_api(pg_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    proc, api = start_chat_api(pg_url, fake_openai, tmp_path_factory.mktemp("chat_api_block"), PII_POLICY="block")
    yield api
    stop(proc)


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def _admin(api: ChatApiProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin_token}"}


def _sent(api: ChatApiProcess) -> str:
    """Everything the fake upstream received, as one JSON text."""
    return json.dumps([r["body"] for r in api.fake_requests()], ensure_ascii=False)


def _assert_no_raw(text: str) -> None:
    for value in RAW:
        assert value not in text, value


def _dump(api: ChatApiProcess, *, skip: tuple[str, ...] = ()) -> str:
    """Every row of every table (but ``skip``), as JSON text."""
    api.flush_ledger()
    with psycopg.connect(api.pg_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            if r[0] not in skip]
        return "\n".join(str(row[0]) for t in tables for row in conn.execute(
            f'SELECT row_to_json(t)::text FROM "{t}" t'))  # noqa: S608 - names from pg_tables


def _rows(api: ChatApiProcess, sql: str, *params: object) -> list[tuple]:
    api.flush_ledger()
    with psycopg.connect(api.pg_url) as conn:
        return list(conn.execute(sql, params))


def _turns(api: ChatApiProcess, external_id: str) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in _rows(
        api, "SELECT t.system_prompt, t.prompt, t.reply FROM turns t JOIN conversations c ON c.id = t.conversation_id "
             "WHERE c.external_id = %s ORDER BY t.id", external_id)]


def _ledger_counts(api: ChatApiProcess, key_id: str) -> list[dict[str, int] | None]:
    return [json.loads(r[0]) if r[0] else None for r in _rows(
        api, "SELECT pii_counts FROM spend_ledger WHERE client_key_id = %s ORDER BY id", key_id)]


def _sse(api: ChatApiProcess, path: str, key: str, body: dict, **headers: str) -> tuple[httpx.Headers, str]:
    with httpx.stream("POST", api.url + path, json=body, headers=_auth(key, **headers), timeout=30) as r:
        assert r.status_code == 200, r.read()
        return r.headers, "".join(r.iter_text())


# -- mask: the original dialect ---------------------------------------------------------------

def test_original_dialect_masks_every_text_it_sends_and_stores_and_replays_placeholders(chat_api):
    key, key_id = chat_api.new_key_and_id("pii-original")
    conversation = "pii-" + uuid.uuid4().hex
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=_auth(key), json={
        "request_id": conversation,
        "system_prompt": f"상담원입니다. 담당자 메일 {EMAIL}",
        "instructions": f"회신 번호는 {PHONE_B} 입니다.",
        "conversation_history": [{"role": "user", "content": f"제 카드 {CARD} 결제가 두 번 됐어요"},
                                 {"role": "assistant", "content": "확인해 보겠습니다."}],
        "user_prompt": f"연락처 {PHONE}, 주민번호 {RRN} 입니다. 카드 {CARD} 환불해 주세요.",
    })
    assert r.status_code == 200, r.text
    assert r.headers["x-llm-pii-masked"] == "6"  # email, phone B, card (history), phone, rrn, card again
    sent = _sent(chat_api)
    _assert_no_raw(sent)
    body = chat_api.fake_requests()[-1]["body"]
    assert body["instructions"] == "회신 번호는 [전화번호1] 입니다."
    assert body["input"][0]["content"] == "상담원입니다. 담당자 메일 [이메일1]"
    assert body["input"][1]["content"] == "제 카드 [카드번호1] 결제가 두 번 됐어요"  # the same card, the same placeholder
    assert body["input"][-1]["content"] == "연락처 [전화번호2], 주민번호 [주민등록번호1] 입니다. 카드 [카드번호1] 환불해 주세요."
    assert _turns(chat_api, conversation) == [(
        "상담원입니다. 담당자 메일 [이메일1]", "연락처 [전화번호2], 주민번호 [주민등록번호1] 입니다. 카드 [카드번호1] 환불해 주세요.",
        "fake reply to: 연락처 [전화번호2], 주민번호 [주민등록번호1] 입니다. 카드 [카드번")]
    assert _ledger_counts(chat_api, key_id) == [{"card": 2, "email": 1, "phone": 2, "rrn": 1}]

    # The next turn replays the stored (masked) history: its placeholders keep their numbers,
    # a new number gets the next one, and the number already seen gets its old placeholder back.
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=_auth(key), json={
        "request_id": conversation, "user_prompt": f"새 번호 {PHONE_C} 로 연락 주세요. 예전 번호 {PHONE} 는 해지했어요."})
    assert r.status_code == 200, r.text
    assert r.headers["x-llm-pii-masked"] == "2"
    body = chat_api.fake_requests()[-1]["body"]
    assert [m["content"] for m in body["input"]][:2] == [
        "연락처 [전화번호2], 주민번호 [주민등록번호1] 입니다. 카드 [카드번호1] 환불해 주세요.",
        "fake reply to: 연락처 [전화번호2], 주민번호 [주민등록번호1] 입니다. 카드 [카드번"]
    # PHONE is new to this request's scanner: it is numbered after the replayed ones
    assert body["input"][-1]["content"] == "새 번호 [전화번호3] 로 연락 주세요. 예전 번호 [전화번호4] 는 해지했어요."
    _assert_no_raw(_sent(chat_api))
    _assert_no_raw(_dump(chat_api))
    _assert_no_raw(chat_api.log_path.read_text(encoding="utf-8"))  # DEBUG logs included


def test_original_stream_has_the_count_in_its_first_headers_and_sends_only_placeholders(chat_api):
    key, key_id = chat_api.new_key_and_id("pii-stream")
    conversation = "pii-" + uuid.uuid4().hex
    chat_api.clear_fake()
    headers, text = _sse(chat_api, "/api/v1/chat/stream", key, {
        "request_id": conversation, "user_prompt": f"제 번호 {PHONE} 과 메일 {EMAIL} 로 알려주세요",
        "conversation_history": [{"role": "user", "content": f"주민번호 {RRN}"}]})
    assert headers["x-llm-pii-masked"] == "3"
    assert "event: done" in text
    _assert_no_raw(_sent(chat_api))
    assert _turns(chat_api, conversation)[0][1] == "제 번호 [전화번호1] 과 메일 [이메일1] 로 알려주세요"
    assert _ledger_counts(chat_api, key_id) == [{"email": 1, "phone": 1, "rrn": 1}]
    _assert_no_raw(_dump(chat_api))


# -- mask: the OpenAI dialect -----------------------------------------------------------------

CHAT_MESSAGES = [
    {"role": "system", "content": f"고객 메일 {EMAIL} 로 답장하지 마세요."},
    {"role": "user", "content": [{"type": "text", "text": f"카드 {CARD} 환불 상태를 조회해 주세요."}]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "lookup", "arguments": json.dumps({"phone": PHONE}, ensure_ascii=False)}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": f"고객 주민번호 {RRN}, 연락처 {PHONE}"},
    {"role": "user", "content": f"{PHONE_B} 로도 문자 주세요"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_masks_messages_parts_tool_calls_and_tool_results(chat_api, stream):
    key, key_id = chat_api.new_key_and_id("pii-chat")
    session = "pii-" + uuid.uuid4().hex
    chat_api.clear_fake()
    body = {"model": "gpt-4o-mini", "messages": CHAT_MESSAGES, "stream": stream}
    if stream:
        headers, text = _sse(chat_api, "/v1/chat/completions", key, body, **{"X-Session-Id": session})
        assert "[DONE]" in text
    else:
        r = httpx.post(chat_api.url + "/v1/chat/completions", json=body,
                       headers=_auth(key, **{"X-Session-Id": session}))
        assert r.status_code == 200, r.text
        headers = r.headers
    assert headers["x-llm-pii-masked"] == "6"  # email, card, phone (arguments), rrn, phone (tool), phone B
    _assert_no_raw(_sent(chat_api))
    messages = chat_api.fake_requests()[-1]["body"]["messages"]
    assert messages[1]["content"] == [{"type": "text", "text": "카드 [카드번호1] 환불 상태를 조회해 주세요."}]
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {"phone": "[전화번호1]"}
    assert messages[2]["tool_calls"][0]["id"] == "call_1" and messages[3]["tool_call_id"] == "call_1"
    assert messages[3]["content"] == "고객 주민번호 [주민등록번호1], 연락처 [전화번호1]"
    assert _turns(chat_api, session) == [("고객 메일 [이메일1] 로 답장하지 마세요.", "[전화번호2] 로도 문자 주세요",
                                          "fake reply to: [전화번호2] 로도 문자 주세요")]
    assert _ledger_counts(chat_api, key_id) == [{"card": 1, "email": 1, "phone": 3, "rrn": 1}]
    _assert_no_raw(_dump(chat_api))


@pytest.mark.parametrize("stream", [False, True])
def test_responses_masks_instructions_input_items_and_function_call_output(chat_api, stream):
    key, key_id = chat_api.new_key_and_id("pii-responses")
    chat_api.clear_fake()
    body = {"model": "gpt-4o-mini", "stream": stream, "instructions": f"담당자 {PHONE_B} 는 언급하지 마세요.", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"메일 {EMAIL} 계정 조회"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup",
         "arguments": json.dumps({"email": EMAIL}, ensure_ascii=False)},
        {"type": "function_call_output", "call_id": "c1", "output": f"카드 {CARD}, 주민번호 {RRN}"},
        {"role": "user", "content": "위 카드 결제 내역을 요약해 주세요"},
    ]}
    if stream:
        headers, text = _sse(chat_api, "/v1/responses", key, body)
        assert "response.completed" in text
    else:
        r = httpx.post(chat_api.url + "/v1/responses", json=body, headers=_auth(key))
        assert r.status_code == 200, r.text
        headers = r.headers
    assert headers["x-llm-pii-masked"] == "5"
    _assert_no_raw(_sent(chat_api))
    sent = chat_api.fake_requests()[-1]["body"]
    assert sent["instructions"] == "담당자 [전화번호1] 는 언급하지 마세요."
    assert sent["input"][0]["content"] == [{"type": "input_text", "text": "메일 [이메일1] 계정 조회"}]
    assert json.loads(sent["input"][1]["arguments"]) == {"email": "[이메일1]"}
    assert sent["input"][2] == {"type": "function_call_output", "call_id": "c1", "output": "카드 [카드번호1], 주민번호 [주민등록번호1]"}
    assert _ledger_counts(chat_api, key_id) == [{"card": 1, "email": 2, "phone": 1, "rrn": 1}]
    _assert_no_raw(_dump(chat_api))


@pytest.mark.parametrize(("path", "body", "sent", "masked"), [
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": f"고객 {PHONE}, 메일 {EMAIL}"},
     "고객 [전화번호1], 메일 [이메일1]", 2),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "encoding_format": "float",
                        "input": [f"카드 {CARD}", "깨끗한 문장", f"같은 카드 {CARD}, 주민번호 {RRN}"]},
     ["카드 [카드번호1]", "깨끗한 문장", "같은 카드 [카드번호1], 주민번호 [주민등록번호1]"], 3),
    ("/v1/moderations", {"input": [f"번호 {PHONE_B}", f"메일 {EMAIL}"]}, ["번호 [전화번호1]", "메일 [이메일1]"], 2),
    ("/v1/moderations", {"model": "omni-moderation-latest", "input": [
        {"type": "text", "text": f"카드 {CARD}"}, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
     [{"type": "text", "text": "카드 [카드번호1]"}, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
     1),
], ids=["embeddings-string", "embeddings-strings", "moderations-strings", "moderations-parts"])
def test_embeddings_and_moderations_input_is_masked_before_it_leaves(chat_api, path, body, sent, masked):
    key, key_id = chat_api.new_key_and_id("pii-passthrough")
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + path, json=body, headers=_auth(key))
    assert r.status_code == 200, r.text
    assert r.headers["x-llm-pii-masked"] == str(masked)
    [request] = chat_api.fake_requests()
    assert request["body"]["input"] == sent
    assert all(request["body"][k] == v for k, v in body.items() if k != "input")  # the rest as sent
    _assert_no_raw(_sent(chat_api))
    [counts] = _ledger_counts(chat_api, key_id)
    assert counts is not None and sum(counts.values()) == masked
    _assert_no_raw(_dump(chat_api))


def test_embeddings_token_arrays_pass_untouched(chat_api):
    key, key_id = chat_api.new_key_and_id("pii-tokens")
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/embeddings", headers=_auth(key),
                   json={"model": "text-embedding-3-small", "input": [[1001, 2345, 6789], [4111]]})
    assert r.status_code == 200, r.text
    assert "x-llm-pii-masked" not in r.headers
    assert chat_api.fake_requests()[-1]["body"]["input"] == [[1001, 2345, 6789], [4111]]
    assert _ledger_counts(chat_api, key_id) == [None]


def test_a_clean_request_has_no_header_and_no_counts(chat_api):
    key, key_id = chat_api.new_key_and_id("pii-clean")
    r = httpx.post(chat_api.url + "/v1/chat/completions", headers=_auth(key), json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2024년 11월 30일 주문 ORD-20241130-0001 39,800원"}]})
    assert r.status_code == 200, r.text
    assert "x-llm-pii-masked" not in r.headers
    assert _ledger_counts(chat_api, key_id) == [None]


def test_metrics_count_masked_values_per_kind(chat_api, client_key):
    def masked(kind: str) -> float:
        text = httpx.get(chat_api.url + "/metrics").text
        line = next((ln for ln in text.splitlines()
                     if ln.startswith(f'llm_gateway_pii_values_total{{action="masked",kind="{kind}"}}')), None)
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = masked("rrn")
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=_auth(client_key),
                   json={"user_prompt": f"주민번호 {RRN} 와 {RRN} 확인"})
    assert r.status_code == 200 and r.headers["x-llm-pii-masked"] == "2"
    assert masked("rrn") == before + 2


# -- block ----------------------------------------------------------------------------------

BLOCKED = [
    ("/api/v1/chat", {"request_id": "pii-block-original", "user_prompt": f"주민번호 {RRN} 확인해 주세요",
                      "conversation_history": [{"role": "user", "content": f"번호 {PHONE}"}]}),
    ("/api/v1/chat/stream", {"request_id": "pii-block-stream", "user_prompt": f"번호 {PHONE}, 주민번호 {RRN}"}),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "tool", "tool_call_id": "c", "content": f"주민번호 {RRN}"}, {"role": "user", "content": f"번호 {PHONE}"}]}),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [
        {"role": "user", "content": [{"type": "text", "text": f"{RRN} / {PHONE}"}]}]}),
    ("/v1/responses", {"model": "gpt-4o-mini", "instructions": f"주민번호 {RRN}", "input": [
        {"type": "function_call_output", "call_id": "c", "output": f"번호 {PHONE}"}]}),
    ("/v1/responses", {"model": "gpt-4o-mini", "stream": True, "input": f"{PHONE} {RRN}"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["안녕하세요", f"주민번호 {RRN}", f"번호 {PHONE}"]}),
    ("/v1/moderations", {"input": [{"type": "text", "text": f"{PHONE} / {RRN}"}]}),
]


@pytest.mark.parametrize(("path", "body"), BLOCKED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BLOCKED)])
def test_block_refuses_naming_kinds_sends_nothing_and_stores_nothing(chat_api, blocking_api, path, body):
    key, key_id = blocking_api.new_key_and_id("pii-block")
    chat_api.flush_ledger()  # the other gateway shares the database: nothing of its may land meanwhile
    before = _dump(blocking_api, skip=("request_log",))
    blocking_api.clear_fake()
    headers = {"X-Session-Id": "pii-block-session"} if path.startswith("/v1") else {}
    for lang, kinds in (("ko", "주민등록번호, 전화번호"), ("en", "rrn, phone")):
        r = httpx.post(blocking_api.url + path, json=body, headers=_auth(key, **{"Accept-Language": lang}, **headers))
        assert r.status_code == 400, r.text
        assert "x-llm-pii-masked" not in r.headers
        answer = r.json()
        error = answer["error"] if path.startswith("/v1") else answer
        message = error["message"] if path.startswith("/v1") else error["error"]
        assert (error["code"] if path.startswith("/v1") else answer["code"]) == "pii_detected"
        assert f"({kinds})" in message, message
        _assert_no_raw(r.text)
    assert blocking_api.fake_requests() == []
    # The request log records each refusal (status and code, never the text); nothing else is stored.
    assert _refusals_logged(blocking_api, key_id, 2) == [(400, "pii_detected")] * 2
    assert _dump(blocking_api, skip=("request_log",)) == before
    _assert_no_raw(_dump(blocking_api))
    _assert_no_raw(blocking_api.log_path.read_text(encoding="utf-8"))
    assert _ledger_counts(blocking_api, key_id) == []


def _refusals_logged(api: ChatApiProcess, key_id: str, n: int, timeout: float = 20.0) -> list[tuple[int, str]]:
    """The key's request-log entries (status, code), once ``n`` are written (the log writes
    in the background) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [(r[0], r[1]) for r in _rows(
            api, "SELECT status, error_code FROM request_log WHERE client_key_id = %s ORDER BY id", key_id)]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_block_lets_a_clean_request_through(blocking_api):
    key = blocking_api.new_key("pii-block-clean")
    r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(key),
                   json={"user_prompt": "주문번호 ORD-20241130-0001, 2024-11-30 결제 39,800원 환불 문의"})
    assert r.status_code == 200, r.text


def test_block_is_counted_in_the_metrics(blocking_api):
    key = blocking_api.new_key("pii-block-metric")
    r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(key), json={"user_prompt": f"카드 {CARD}"})
    assert r.status_code == 400
    assert 'llm_gateway_pii_values_total{action="blocked",kind="card"} 1.0' in httpx.get(
        blocking_api.url + "/metrics").text


# -- a key's own policy ------------------------------------------------------------------------

def test_a_keys_policy_beats_the_servers_and_can_be_changed_by_the_admin_api(blocking_api):
    r = httpx.post(blocking_api.url + "/admin/v1/keys", headers=_admin(blocking_api),
                   json={"name": "pii-mask-" + uuid.uuid4().hex[:6], "pii_policy": "mask"})
    assert r.status_code == 201, r.text
    key, item = r.json()["key"], r.json()["item"]
    assert item["pii_policy"] == "mask"
    blocking_api.clear_fake()
    prompt = {"user_prompt": f"번호 {PHONE} 로 연락 주세요"}
    r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(key), json=prompt)
    assert r.status_code == 200, r.text  # the server blocks; this key masks
    assert r.headers["x-llm-pii-masked"] == "1"
    _assert_no_raw(_sent(blocking_api))

    r = httpx.put(blocking_api.url + f"/admin/v1/keys/{item['id']}/pii-policy", headers=_admin(blocking_api),
                  json={"pii_policy": None})
    assert r.status_code == 200 and r.json()["item"]["pii_policy"] is None
    r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(key), json=prompt)
    assert r.status_code == 400 and r.json()["code"] == "pii_detected"  # back to the server's block, at once

    listed = httpx.get(blocking_api.url + "/admin/v1/keys", headers=_admin(blocking_api)).json()["items"]
    assert next(k for k in listed if k["id"] == item["id"])["pii_policy"] is None


def test_admin_api_refuses_an_unknown_policy(chat_api):
    r = httpx.post(chat_api.url + "/admin/v1/keys", headers=_admin(chat_api), json={"name": "x", "pii_policy": "hide"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "pii_policy"
    _, key_id = chat_api.new_key_and_id("pii-put")
    r = httpx.put(chat_api.url + f"/admin/v1/keys/{key_id}/pii-policy", headers=_admin(chat_api),
                  json={"pii_policy": "BLOCKED"})
    assert r.status_code == 422
    r = httpx.put(chat_api.url + "/admin/v1/keys/nope/pii-policy", headers=_admin(chat_api), json={"pii_policy": "off"})
    assert r.status_code == 404


def _llmctl(api: ChatApiProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "llmctl"), *args], env={**os.environ, **api.env}, cwd=ROOT,
                          capture_output=True, text=True, check=False)


def test_llmctl_creates_an_off_key_that_sends_values_as_is_on_a_masking_server(chat_api):
    name = "pii-off-" + uuid.uuid4().hex[:6]
    out = _llmctl(chat_api, "keys", "create", "--name", name, "--pii-policy", "off")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    listed = _llmctl(chat_api, "keys", "list").stdout
    row = next(line for line in listed.splitlines() if name in line)
    assert " off " in row and row.rstrip().endswith("active")
    assert " pii " in listed.splitlines()[0]
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/api/v1/chat", headers=_auth(key), json={"user_prompt": "번호 010-5555-1234 확인"})
    assert r.status_code == 200, r.text
    assert "x-llm-pii-masked" not in r.headers
    assert "010-5555-1234" in _sent(chat_api)  # the operator allowed it for this key
    bad = _llmctl(chat_api, "keys", "create", "--name", name, "--pii-policy", "hide")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


def test_admin_api_sums_counts_per_kind_in_total_and_per_key(chat_api):
    key, key_id = chat_api.new_key_and_id("pii-admin-sum")
    for prompt in (f"번호 {PHONE} 와 {PHONE_B}", f"주민번호 {RRN}", "깨끗한 질문"):
        r = httpx.post(chat_api.url + "/api/v1/chat", headers=_auth(key), json={"user_prompt": prompt})
        assert r.status_code == 200, r.text
    chat_api.flush_ledger()
    answer = httpx.get(chat_api.url + "/admin/v1/pii", headers=_admin(chat_api)).json()
    row = next(k for k in answer["by_key"] if k["client_key_id"] == key_id)
    assert row["counts"] == {"phone": 2, "rrn": 1} and row["name"].startswith("pii-admin-sum")
    assert answer["total"]["phone"] >= 2 and answer["total"]["rrn"] >= 1
    assert sum(k["counts"].get("phone", 0) for k in answer["by_key"]) == answer["total"]["phone"]
    only = httpx.get(chat_api.url + "/admin/v1/pii", params={"client_key_id": key_id}, headers=_admin(chat_api)).json()
    assert only["total"] == {"phone": 2, "rrn": 1}
    future = httpx.get(chat_api.url + "/admin/v1/pii", params={"since": "2099-01-01T00:00:00Z"},
                       headers=_admin(chat_api)).json()
    assert future["total"] == {} and future["by_key"] == []


# -- the request log and the admin API ----------------------------------------------------------

REQUEST_ITEM = {"request_id", "created_at", "route", "status", "error_code", "client_key_id", "model", "key_source",
                "fallback_reason", "upstream", "latency_ms", "cost_usd", "cost_krw", "client_name", "client_short_id"}


def test_request_log_and_admin_api_carry_counts_per_kind_masked_and_blocked(chat_api, blocking_api):
    key, key_id = chat_api.new_key_and_id("pii-log-mask")
    r = httpx.post(chat_api.url + "/v1/embeddings", headers=_auth(key), json={
        "model": "text-embedding-3-small", "input": [f"카드 {CARD}", f"주민번호 {RRN}, 카드 {CARD}"]})
    assert r.status_code == 200 and r.headers["x-llm-pii-masked"] == "3"
    chat_api.flush_ledger()
    [item] = httpx.get(chat_api.url + "/admin/v1/requests", params={"client_key_id": key_id},
                       headers=_admin(chat_api)).json()["items"]
    assert REQUEST_ITEM <= set(item) and (item["route"], item["status"]) == ("/v1/embeddings", 200)
    assert item["pii_counts"] == {"card": 2, "rrn": 1}
    one = httpx.get(chat_api.url + f"/admin/v1/requests/{item['request_id']}", headers=_admin(chat_api)).json()
    assert one["item"]["pii_counts"] == {"card": 2, "rrn": 1}
    exported = httpx.get(chat_api.url + "/admin/v1/requests.csv", params={"client_key_id": key_id},
                         headers=_admin(chat_api)).content.decode("utf-8-sig")
    [row] = csv.DictReader(io.StringIO(exported))
    assert json.loads(row["pii_counts"]) == {"card": 2, "rrn": 1} and row["ttft_ms"] == ""
    _assert_no_raw(exported)

    blocked_key, blocked_id = blocking_api.new_key_and_id("pii-log-block")
    for prompt in (f"번호 {PHONE} 와 {PHONE_B}", f"메일 {EMAIL}"):
        r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(blocked_key), json={"user_prompt": prompt})
        assert r.status_code == 400
    r = httpx.post(blocking_api.url + "/api/v1/chat", headers=_auth(blocked_key), json={"user_prompt": "깨끗한 질문"})
    assert r.status_code == 200
    blocking_api.flush_ledger()
    items = httpx.get(blocking_api.url + "/admin/v1/requests", params={"client_key_id": blocked_id},
                      headers=_admin(blocking_api)).json()["items"]
    assert [(i["status"], i["error_code"], i["pii_counts"]) for i in items] == [
        (200, None, {}), (400, "pii_detected", {"email": 1}), (400, "pii_detected", {"phone": 2})]

    # GET /admin/v1/pii: "total"/"counts" sent upstream (ledger), "blocked" refused (request log)
    def pii(**params: str) -> dict:
        return httpx.get(chat_api.url + "/admin/v1/pii", params=params, headers=_admin(chat_api)).json()

    mine = pii(client_key_id=key_id)
    assert (mine["total"], mine["blocked"]) == ({"card": 2, "rrn": 1}, {})
    theirs = pii(client_key_id=blocked_id)
    assert (theirs["total"], theirs["blocked"]) == ({}, {"email": 1, "phone": 2})
    assert theirs["by_key"] == [{"client_key_id": blocked_id, "short_id": theirs["by_key"][0]["short_id"],
                                 "name": theirs["by_key"][0]["name"], "counts": {}, "blocked": {"email": 1, "phone": 2}}]
    assert theirs["by_key"][0]["name"].startswith("pii-log-block")
    everyone = pii()
    rows = {k["client_key_id"]: k for k in everyone["by_key"]}
    assert rows[key_id]["counts"] == {"card": 2, "rrn": 1} and rows[blocked_id]["blocked"] == {"email": 1, "phone": 2}
    assert everyone["blocked"]["phone"] >= 2
    assert sum(k["blocked"].get("phone", 0) for k in everyone["by_key"]) == everyone["blocked"]["phone"]
    _assert_no_raw(json.dumps(everyone, ensure_ascii=False))
