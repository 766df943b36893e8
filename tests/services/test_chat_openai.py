"""The OpenAI dialect with the official SDK as the client."""
from __future__ import annotations

import httpx
import openai
import psycopg
import pytest


@pytest.fixture
def sdk(chat_api, client_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_api.url + "/v1", api_key=client_key, max_retries=0)


def test_chat_completion(sdk, chat_api):
    chat_api.clear_fake()
    r = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "안녕하세요"}],
                                    max_tokens=30)
    assert r.choices[0].message.content == "fake reply to: 안녕하세요"
    assert r.usage.completion_tokens == 12
    (seen,) = chat_api.fake_requests()
    assert seen["key"].startswith("sk-server"), "the server key pays, never the client key"
    assert seen["body"]["max_tokens"] == 30


def test_chat_stream_without_usage_asked_still_records_exact_usage(sdk, chat_api):
    chat_api.clear_fake()
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                              messages=[{"role": "user", "content": "stream me"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake reply to: stream me"
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for is not relayed"
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["stream_options"] == {"include_usage": True}
    chat_api.flush_ledger()
    with psycopg.connect(chat_api.pg_url) as conn:
        row = conn.execute("SELECT output_tokens, estimated FROM spend_ledger WHERE route='/v1/chat/completions' "
                           "ORDER BY id DESC LIMIT 1").fetchone()
    assert row == (12, False)


def test_chat_stream_with_usage(sdk):
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                              stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "usage please"}]))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_responses_plain_stream_and_background(sdk):
    r = sdk.responses.create(model="gpt-4o-mini", input="응답 API", tools=[{"type": "web_search"}])
    assert r.output_text == "fake reply to: 응답 API"
    with sdk.responses.stream(model="gpt-4o-mini", input="흘려보내기") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "fake reply to: 흘려보내기"
    queued = sdk.responses.create(model="gpt-4o-mini", input="나중에", background=True)
    assert queued.status == "queued"
    assert sdk.responses.retrieve(queued.id).status == "in_progress"
    assert sdk.responses.retrieve(queued.id).status == "completed"
    assert sdk.responses.cancel(queued.id).status == "cancelled"


def test_tools_are_passed_through(sdk, chat_api):
    chat_api.clear_fake()
    sdk.responses.create(model="gpt-4o-mini", input="검색", tools=[{"type": "web_search"}])
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["tools"] == [{"type": "web_search"}]


def test_models_lists_the_allowed_catalogue(sdk):
    ids = {m.id for m in sdk.models.list()}
    assert {"gpt-4o-mini", "gpt-4.1", "o3", "fake-stream-slow"} <= ids


def test_error_classes(sdk, chat_api):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert bad.value.code == "unknown_model"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=chat_api.url + "/v1", api_key="llms-wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve("resp_does_not_exist")
    with pytest.raises(openai.RateLimitError):  # the upstream keeps answering 429; our retries give up
        sdk.chat.completions.create(model="fake-429", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="fake-500", messages=[{"role": "user", "content": "x"}])


def test_retries_recover_a_flaky_upstream(sdk, chat_api):
    chat_api.clear_fake()
    r = sdk.chat.completions.create(model="fake-flaky", messages=[{"role": "user", "content": "flaky"}])
    assert r.choices[0].message.content == "fake reply to: flaky"
    assert len(chat_api.fake_requests()) == 2
    metrics = httpx.get(chat_api.url + "/metrics").text
    assert 'llm_gateway_upstream_retries_total{reason="500"}' in metrics


@pytest.mark.parametrize("body", [
    {"model": "gpt-4o-mini"},
    {"model": "gpt-4o-mini", "messages": []},
    {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]},
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
    {"model": 5, "messages": [{"role": "user", "content": "x"}]},
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "base_url": "http://127.0.0.1:9"},
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x", "meta": {"api_key": "sk-x"}}]},
])
def test_bad_openai_bodies_are_400_and_reach_nothing(chat_api, client_key, body):
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {client_key}"})
    assert r.status_code == 400, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert chat_api.fake_requests() == []


def test_session_header_replays_history(sdk, chat_api):
    headers = {"X-Session-Id": "sdk-session"}
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "첫 질문"}],
                                extra_headers=headers)
    chat_api.clear_fake()
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": "sys"},
                                                              {"role": "user", "content": "둘째 질문"}],
                                extra_headers=headers)
    (seen,) = chat_api.fake_requests()
    assert [m["content"] for m in seen["body"]["messages"]] == ["sys", "첫 질문", "fake reply to: 첫 질문", "둘째 질문"]


def test_idempotency_key_replays_without_a_second_upstream_call(chat_api, client_key):
    headers = {"Authorization": f"Bearer {client_key}", "Idempotency-Key": "idem-1"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "한 번만"}]}
    chat_api.clear_fake()
    first = httpx.post(chat_api.url + "/v1/chat/completions", json=body, headers=headers)
    again = httpx.post(chat_api.url + "/v1/chat/completions", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(chat_api.fake_requests()) == 1
    other = httpx.post(chat_api.url + "/v1/chat/completions", headers=headers,
                       json={**body, "messages": [{"role": "user", "content": "다른 본문"}]})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    original = httpx.post(chat_api.url + "/api/v1/chat", headers={**headers, "Idempotency-Key": "idem-2"},
                          json={"user_prompt": "원래 방언도"})
    replay = httpx.post(chat_api.url + "/api/v1/chat", headers={**headers, "Idempotency-Key": "idem-2"},
                        json={"user_prompt": "원래 방언도"})
    assert replay.json() == original.json() and len(chat_api.fake_requests()) == 2


def test_a_response_can_be_fetched_only_by_its_owner(sdk, chat_api):
    queued = sdk.responses.create(model="gpt-4o-mini", input="내 것", background=True)
    other = openai.OpenAI(base_url=chat_api.url + "/v1", api_key=chat_api.issue_key("someone-else"), max_retries=0)
    chat_api.clear_fake()
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(queued.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.cancel(queued.id)
    assert chat_api.fake_requests() == [], "the upstream is never asked on another client's behalf"
    assert sdk.responses.retrieve(queued.id).id == queued.id
    # Finished (and so settled) now, so the background poller asks the upstream nothing later,
    # in the middle of another test.
    assert sdk.responses.retrieve(queued.id).status == "completed"


def test_an_overlong_session_id_is_refused(chat_api, client_key):
    r = httpx.post(chat_api.url + "/v1/chat/completions", headers={
        "Authorization": f"Bearer {client_key}", "X-Session-Id": "s" * 201},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "X-Session-Id"
