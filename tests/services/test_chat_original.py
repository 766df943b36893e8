"""The original /api/v1/chat dialect, over real HTTP, on real Postgres."""
from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

ORIGINAL_KEYS = {"id", "request_id", "object", "created_at", "status", "model", "output_text", "input_tokens",
                 "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "text_format_type", "cost",
                 "response_time", "success", "error", "use_user_api_key"}


def test_root_as_in_the_seed_readme(chat_api):
    # curl http://localhost:8080/api/v1/
    r = httpx.get(chat_api.url + "/api/v1/")
    assert r.status_code == 200
    assert r.json() == {"message": "LLM Server API", "status": "running"}


def test_seed_readme_basic_chat_example(chat_api):
    """The README's Python example, byte for byte (anonymous use is on for this server)."""
    response = httpx.post(chat_api.url + "/api/v1/chat", json={
        "request_id": "unique_session_id",
        "user_prompt": "Python의 특징을 설명해주세요.",
        "system_prompt": "당신은 친절한 프로그래밍 튜터입니다.",
        "max_tokens": 1000,
        "temperature": 0.7,
        "model": "gpt-4o-mini",
    })
    result = response.json()
    assert response.status_code == 200, result
    assert ORIGINAL_KEYS <= set(result)
    assert result["output_text"] == "fake reply to: Python의 특징을 설명해주세요."
    assert result["success"] is True and result["error"] is None and result["status"] == "completed"
    assert result["request_id"] == "unique_session_id" and result["object"] == "response"
    # fake upstream: prompt tokens = ceil(chars/4) of system+user text, completion = 12
    text = "당신은 친절한 프로그래밍 튜터입니다. Python의 특징을 설명해주세요."
    assert result["input_tokens"] == -(-len(text) // 4)
    assert result["output_tokens"] == 12
    assert result["total_tokens"] == result["input_tokens"] + 12
    # gpt-4o-mini: 0.15 / 0.60 USD per 1M → exact cost, rounded once to millicents
    usd = (result["input_tokens"] * 0.15 + 12 * 0.60) / 1e6
    assert result["cost"] == round(usd * 1e5)
    assert result["cost_usd"] == pytest.approx(usd, abs=1e-12)
    assert result["key_source"] == "server" and result["fallback_reason"] is None
    assert isinstance(result["created_at"], int) and isinstance(result["response_time"], float)


def test_seed_readme_user_key_example(chat_api):
    chat_api.clear_fake()
    response = httpx.post(chat_api.url + "/api/v1/chat", json={
        "user_prompt": "안녕하세요!",
        "openai_api_key": "sk-your-api-key",
        "use_user_api_key": True,
    })
    body = response.json()
    assert response.status_code == 200, body
    assert body["key_source"] == "user" and body["use_user_api_key"] is True
    assert body["input_tokens"] > 0, "real token counts even on the user's key"
    seen = chat_api.fake_requests()
    assert [r["key"] for r in seen] == ["sk-your-api-key"]
    assert "sk-your-api-key" not in response.text


def test_upstream_call_shape_is_the_originals(chat_api, client_key):
    chat_api.clear_fake()
    httpx.post(chat_api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {client_key}"}, json={
        "user_prompt": "질문", "system_prompt": "", "instructions": "짧게", "max_tokens": 50, "temperature": 0.2,
        "conversation_history": [{"role": "user", "content": "앞"}, {"role": "assistant", "content": "뒤"}]})
    (seen,) = chat_api.fake_requests()
    assert seen["path"] == "/v1/responses"
    body = seen["body"]
    assert body["input"] == [{"role": "user", "content": "앞"}, {"role": "assistant", "content": "뒤"},
                             {"role": "user", "content": "질문"}], "an empty system prompt is omitted"
    assert body["max_output_tokens"] == 50 and body["temperature"] == 0.2 and body["instructions"] == "짧게"


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "user_prompt"),
    ({"user_prompt": None}, "user_prompt"),
    ({"user_prompt": "   "}, "user_prompt"),
    ({"user_prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"user_prompt": "x", "temperature": 2.5}, "temperature"),
    ({"user_prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"user_prompt": "x", "model": "gpt-nonexistent"}, "model"),
    ({"user_prompt": "x\u0000y"}, "user_prompt"),
    ({"user_prompt": "x", "extra": {"api_base": "http://evil"}}, "extra.api_base"),
])
def test_bad_input_is_a_400_in_the_original_shape_and_reaches_nothing(chat_api, client_key, payload, field):
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/api/v1/chat", json={"request_id": "rid-bad", **payload},
                   headers={"Authorization": f"Bearer {client_key}"})
    body = r.json()
    assert r.status_code == 400, body
    assert ORIGINAL_KEYS <= set(body)
    assert body["success"] is False and body["status"] == "failed"
    assert body["error"].startswith("입력 데이터 오류: ")
    assert body["request_id"] == "rid-bad"
    assert body["code"]
    assert chat_api.fake_requests() == []


def test_errors_in_english_on_request(chat_api):
    r = httpx.post(chat_api.url + "/api/v1/chat", json={"user_prompt": ""}, headers={"Accept-Language": "en"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("Invalid input: ")


def test_malformed_json_and_oversize_bodies(chat_api):
    r = httpx.post(chat_api.url + "/api/v1/chat", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    r = httpx.post(chat_api.url + "/api/v1/chat", content=b'{"user_prompt": "' + b"a" * 1_100_000 + b'"}')
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_upstream_failure_is_a_503_with_the_original_prefix(chat_api, client_key):
    r = httpx.post(chat_api.url + "/api/v1/chat", json={"user_prompt": "x", "model": "fake-500"},
                   headers={"Authorization": f"Bearer {client_key}"}, timeout=30)
    assert r.status_code == 503
    assert r.json()["error"].startswith("AI 서비스 연결 오류: ")
    assert r.headers["retry-after"]


def test_history_is_replayed_for_a_named_conversation(chat_api, client_key):
    headers = {"Authorization": f"Bearer {client_key}"}
    first = httpx.post(chat_api.url + "/api/v1/chat", headers=headers,
                       json={"request_id": "conv-replay", "user_prompt": "내 이름은 민수야"}).json()
    chat_api.clear_fake()
    second = httpx.post(chat_api.url + "/api/v1/chat", headers=headers,
                        json={"request_id": "conv-replay", "user_prompt": "내 이름이 뭐지?"}).json()
    assert (first["conversation_turn"], second["conversation_turn"]) == (1, 2)
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["input"] == [
        {"role": "user", "content": "내 이름은 민수야"},
        {"role": "assistant", "content": "fake reply to: 내 이름은 민수야"},
        {"role": "user", "content": "내 이름이 뭐지?"}]


def test_explicit_history_is_used_as_given(chat_api, client_key):
    headers = {"Authorization": f"Bearer {client_key}"}
    httpx.post(chat_api.url + "/api/v1/chat", headers=headers, json={"request_id": "conv-explicit", "user_prompt": "a"})
    chat_api.clear_fake()
    httpx.post(chat_api.url + "/api/v1/chat", headers=headers, json={
        "request_id": "conv-explicit", "user_prompt": "b",
        "conversation_history": [{"role": "user", "content": "given"}]})
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["input"] == [{"role": "user", "content": "given"}, {"role": "user", "content": "b"}]


async def test_two_parallel_turns_on_one_conversation_get_distinct_turns(chat_api, client_key):
    headers = {"Authorization": f"Bearer {client_key}"}
    async with httpx.AsyncClient(base_url=chat_api.url, headers=headers) as client:
        results = await asyncio.gather(*[client.post("/api/v1/chat", json={
            "request_id": "conv-parallel", "user_prompt": f"병렬 {i}"}) for i in range(2)])
    turns = sorted(r.json()["conversation_turn"] for r in results)
    assert turns == [1, 2]
    with psycopg.connect(chat_api.pg_url) as conn:
        rows = conn.execute("SELECT t.turn_index FROM turns t JOIN conversations c ON c.id = t.conversation_id "
                            "WHERE c.external_id = 'conv-parallel' ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [1, 2]


def test_another_client_cannot_read_a_conversation(chat_api, client_key):
    other = chat_api.issue_key("other-client")
    httpx.post(chat_api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {client_key}"},
               json={"request_id": "conv-private", "user_prompt": "비밀 이야기"})
    chat_api.clear_fake()
    httpx.post(chat_api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {other}"},
               json={"request_id": "conv-private", "user_prompt": "앞에서 뭐라고 했지?"})
    (seen,) = chat_api.fake_requests()
    assert "비밀" not in str(seen["body"])


def test_every_turn_is_in_the_ledger_with_exact_cost(chat_api, client_key):
    r = httpx.post(chat_api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {client_key}"},
                   json={"request_id": "conv-ledger", "user_prompt": "원장", "model": "gpt-4.1"}).json()
    with psycopg.connect(chat_api.pg_url) as conn:
        row = conn.execute("SELECT s.input_tokens, s.output_tokens, s.cost_nanos, s.key_source, s.catalog_version "
                           "FROM spend_ledger s JOIN conversations c ON c.id = s.conversation_id "
                           "WHERE c.external_id = 'conv-ledger'").fetchone()
    assert row[0] == r["input_tokens"] and row[1] == 12
    assert row[2] == r["input_tokens"] * 2000 + 12 * 8000  # gpt-4.1: 2 / 8 USD per 1M = 2000 / 8000 nano-USD
    assert row[3] == "server" and row[4]


def test_prompts_are_normalised_to_nfc(chat_api, client_key):
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "한국어 질문")
    assert decomposed != "한국어 질문"
    chat_api.clear_fake()
    httpx.post(chat_api.url + "/api/v1/chat", headers={"Authorization": f"Bearer {client_key}"},
               json={"user_prompt": decomposed})
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["input"][-1]["content"] == "한국어 질문"


def test_history_max_turns_caps_the_replay(pg_url, tmp_path):
    """HISTORY_MAX_TURNS: only the newest N stored turns are replayed, whatever the token budget."""
    from tests.services.conftest import start_chat_api
    from tests.support.processes import start_fake_openai, stop

    fake, fake_url = start_fake_openai()
    proc, api = start_chat_api(pg_url, fake_url, tmp_path, HISTORY_MAX_TURNS="2")
    try:
        headers = {"Authorization": f"Bearer {api.issue_key('max-turns')}"}
        for n in range(1, 4):
            r = httpx.post(api.url + "/api/v1/chat", headers=headers,
                           json={"request_id": "capped", "user_prompt": f"질문 {n}"})
            assert r.json()["conversation_turn"] == n
        api.clear_fake()
        httpx.post(api.url + "/api/v1/chat", headers=headers, json={"request_id": "capped", "user_prompt": "질문 4"})
        (seen,) = api.fake_requests()
        assert [m["content"] for m in seen["body"]["input"] if m["role"] == "user"] == ["질문 2", "질문 3", "질문 4"]
    finally:
        stop(proc)
        stop(fake)
