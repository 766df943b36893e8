"""The OpenAI surface real clients call, with the official SDK (sync and async) and
langchain-openai as the clients: a chat-api process on real Postgres in front of the fake
upstream as a process.

Every route of the contract, the headers and errors as OpenAI sends them, the streamed-turn
race, the retry bound, and what an existing client of the original server is told.
"""
from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import subprocess
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import psycopg
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import BIN, ROOT, start_fake_openai, stop, wait_http

USER = [{"role": "user", "content": "안녕하세요"}]


@pytest.fixture
def sdk(chat_api: ChatApiProcess, client_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_api.url + "/v1", api_key=client_key, max_retries=0)


@pytest.fixture
def asdk(chat_api: ChatApiProcess, client_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=chat_api.url + "/v1", api_key=client_key, max_retries=0)


@pytest.fixture(scope="module")
def narrow(pg_url, tmp_path_factory) -> Iterator[ChatApiProcess]:
    """A gateway whose upstream serves few models, with two browser origins allowed, the
    original dialect open without a key (and /v1 not), and a small per-minute allowance."""
    fake, fake_url = start_fake_openai(env={"FAKE_MODELS": "gpt-4o-mini,text-embedding-3-small,not-allowed-here"})
    proc, api = start_chat_api(pg_url, fake_url, tmp_path_factory.mktemp("narrow"),
                               CORS_ALLOW_ORIGINS="https://app.example.com, https://tools.example.org",
                               ALLOW_ANONYMOUS_ORIGINAL="true", RATE_LIMIT_PER_MINUTE="5")
    # Ready means it holds a database connection: on a shared Postgres near max_connections
    # the first one can take a moment.
    wait_http(api.url + "/readyz", 60)
    yield api
    stop(proc)
    stop(fake)


def ledger_rows(api: ChatApiProcess, route: str, limit: int = 1) -> list[tuple]:
    api.flush_ledger()
    with psycopg.connect(api.pg_url) as conn:
        return conn.execute("SELECT model, input_tokens, output_tokens, cost_nanos, outcome, key_source "
                            "FROM spend_ledger WHERE route = %s ORDER BY id DESC LIMIT %s", (route, limit)).fetchall()


# -- every route, sync and async --------------------------------------------------------------
def test_every_route_with_the_sync_sdk(sdk, chat_api):
    chat = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert chat.parse().choices[0].message.content == "fake reply to: 안녕하세요"
    assert chat.parse()._request_id and chat.parse()._request_id.startswith("req_fake_"), "the upstream's id"
    streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True) if c.choices)
    assert streamed == "fake reply to: 안녕하세요"

    created = sdk.responses.create(model="gpt-4o-mini", input="저장된 응답")
    assert created.output_text == "fake reply to: 저장된 응답"
    with sdk.responses.stream(model="gpt-4o-mini", input="흘려보내기") as stream:
        assert stream.get_final_response().output_text == "fake reply to: 흘려보내기"
    assert sdk.responses.retrieve(created.id).id == created.id
    items = sdk.responses.input_items.list(created.id)
    assert [i.content[0].text for i in items.data] == ["저장된 응답"]
    deleted = sdk.responses.delete(created.id)
    assert deleted is None  # the SDK returns nothing for a 200 with a body it does not model
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)  # gone upstream: the upstream's 404 as it sent it

    vectors = sdk.embeddings.create(model="text-embedding-3-small", input=["하나", "둘"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8  # base64 by default, decoded
    assert vectors.usage.prompt_tokens == 2
    moderation = sdk.moderations.create(input="괜찮은 문장")
    assert moderation.results[0].flagged is False

    assert "text-embedding-3-small" in {m.id for m in sdk.models.list()}
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("gpt-9-ultra")
    assert missing.value.code == "model_not_found" and missing.value.response.headers["x-request-id"]


async def test_every_route_with_the_async_sdk(asdk):
    chat = await asdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert chat.choices[0].message.content == "fake reply to: 안녕하세요"
    stream = await asdk.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12

    created = await asdk.responses.create(model="gpt-4o-mini", input="비동기")
    assert (await asdk.responses.retrieve(created.id)).output_text == "fake reply to: 비동기"
    assert len((await asdk.responses.input_items.list(created.id)).data) == 1
    await asdk.responses.delete(created.id)
    async with asdk.responses.stream(model="gpt-4o-mini", input="흐름") as events:
        assert (await events.get_final_response()).output_text == "fake reply to: 흐름"

    vectors = await asdk.embeddings.create(model="text-embedding-3-large", input="벡터", dimensions=4,
                                           encoding_format="float")
    assert len(vectors.data[0].embedding) == 4
    assert (await asdk.moderations.create(input=["a", "b"], model="omni-moderation-latest")).results[1].flagged is False
    assert (await asdk.models.retrieve("text-embedding-3-large")).id == "text-embedding-3-large"
    with pytest.raises(openai.NotFoundError):
        await asdk.models.retrieve("no-such-model")


async def test_concurrent_async_calls_each_get_their_own_request_id(asdk):
    replies = await asyncio.gather(*[asdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"동시 {i}"}]) for i in range(8)])
    ids = {r.headers["x-request-id"] for r in replies}
    assert len(ids) == 8


# -- embeddings and moderations are metered ---------------------------------------------------
def test_embeddings_are_metered_at_the_catalogues_input_price(sdk, chat_api):
    text = "가" * 4000  # the fake counts ceil(chars / 4) = 1000 tokens
    sdk.embeddings.create(model="text-embedding-3-small", input=text)
    ((model, inp, out, cost, outcome, source),) = ledger_rows(chat_api, "/v1/embeddings")
    assert (model, inp, out, outcome, source) == ("text-embedding-3-small", 1000, 0, "ok", "server")
    assert Decimal(cost) / Decimal(10**9) == Decimal("0.00002")  # 1000 × 0.02 / 1M


def test_moderations_leave_a_ledger_row_at_cost_zero(sdk, chat_api):
    sdk.moderations.create(input="검사해 주세요")
    ((model, _, _, cost, outcome, _),) = ledger_rows(chat_api, "/v1/moderations")
    assert (model, cost, outcome) == ("omni-moderation-latest", 0, "ok")


def test_embeddings_are_refused_before_the_upstream_when_the_budget_is_spent(chat_api):
    poor = openai.OpenAI(base_url=chat_api.url + "/v1", api_key=chat_api.issue_key("poor", daily_usd="0.00001"),
                         max_retries=0)
    chat_api.clear_fake()
    with pytest.raises(openai.APIStatusError) as refused:
        poor.embeddings.create(model="text-embedding-3-large", input="나" * 40_000)  # 10,000 tokens × 0.13/1M
    assert refused.value.status_code == 402 and refused.value.code == "budget_exceeded"
    assert chat_api.fake_requests() == []
    assert poor.embeddings.create(model="text-embedding-3-small", input="작은 것").data


@pytest.mark.parametrize("body", [
    {"model": "text-embedding-3-small"},
    {"model": "text-embedding-3-small", "input": ""},
    {"model": "text-embedding-3-small", "input": []},
    {"model": "text-embedding-3-small", "input": [1, "mixed"]},
    {"model": "text-embedding-3-small", "input": 42},
    {"model": "text-embedding-3-small", "input": ["x"] * 2049},
    {"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"},
    {"model": "text-embedding-3-small", "input": "x", "dimensions": 0},
    {"model": "no-such-embedder", "input": "x"},
    {"input": "x"},
])
def test_bad_embedding_requests_never_reach_the_upstream(chat_api, client_key, body):
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {client_key}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert chat_api.fake_requests() == []


def test_llmctl_prices_lists_the_embedding_models(chat_api):
    out = subprocess.run([str(BIN / "llmctl"), "prices"], env={**os.environ, **chat_api.env}, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["text-embedding-3-small"] == ["0.02", "-", "0"]
    assert rows["text-embedding-3-large"] == ["0.13", "-", "0"]
    assert rows["text-embedding-ada-002"] == ["0.10", "-", "0"]


# -- stored responses belong to their creator -------------------------------------------------
def test_only_the_owner_may_delete_or_list_input_items(sdk, chat_api):
    created = sdk.responses.create(model="gpt-4o-mini", input="내 것")
    other = openai.OpenAI(base_url=chat_api.url + "/v1", api_key=chat_api.new_key("other"), max_retries=0)
    anonymous = httpx.Client(base_url=chat_api.url + "/v1")
    chat_api.clear_fake()
    for attempt in (lambda: other.responses.delete(created.id), lambda: other.responses.input_items.list(created.id)):
        with pytest.raises(openai.NotFoundError) as nope:
            attempt()
        assert nope.value.code == "response_not_found"
    assert anonymous.delete(f"/responses/{created.id}").json()["error"]["code"] == "response_not_found"
    assert chat_api.fake_requests() == [], "nothing was asked upstream for someone else's response"
    assert sdk.responses.input_items.list(created.id, limit=5).data


# -- headers ------------------------------------------------------------------------------------
def test_upstream_headers_pass_through_and_our_own_id_otherwise(sdk, chat_api, client_key):
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert raw.headers["openai-processing-ms"] == "7"
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert raw.headers["x-request-id"].startswith("req_fake_")
    assert raw.headers["x-llm-key-source"] == "server" and raw.headers["x-llm-cost-usd"]
    listed = sdk.models.with_raw_response.list()
    first, second = listed.headers["x-request-id"], sdk.models.with_raw_response.list().headers["x-request-id"]
    assert first.startswith("req_") and first != second, "a new id per request when the upstream sent none"
    for path in ("/v1/nothing-here", "/v1/chat/completions"):
        r = httpx.get(chat_api.url + path, headers={"Authorization": f"Bearer {client_key}"})
        assert r.headers["x-request-id"]


def test_streams_carry_the_upstream_headers_key_source_and_cost_in_the_final_event(chat_api, client_key):
    for path, body, last in [
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": USER, "stream": True}, b"data: [DONE]"),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "스트림", "stream": True}, b"event: response.completed"),
    ]:
        with httpx.stream("POST", chat_api.url + path, json=body,
                          headers={"Authorization": f"Bearer {client_key}"}) as r:
            assert r.status_code == 200
            assert r.headers["x-request-id"].startswith("req_fake_")
            assert r.headers["openai-processing-ms"] == "7" and r.headers["x-ratelimit-limit-requests"] == "10000"
            assert r.headers["x-llm-key-source"] == "server"
            events = b"".join(r.iter_bytes()).split(b"\n\n")
        final = [e for e in events if e.strip()][-1]
        assert final.startswith(last), final[:80]
        cost = next(line for line in final.split(b"\n") if line.startswith(b": x-llm-cost-usd: "))
        assert Decimal(cost.split(b": ")[-1].decode()) > 0


# -- errors as OpenAI sends them ------------------------------------------------------------------
def test_unknown_routes_methods_and_legacy_endpoints_answer_in_openais_shape(sdk, chat_api, client_key):
    auth = {"Authorization": f"Bearer {client_key}"}
    missing = httpx.post(chat_api.url + "/v1/nothing-here", json={}, headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"] == {"message": "없는 경로입니다: POST /v1/nothing-here",
                                       "type": "invalid_request_error", "param": None, "code": "route_not_found"}
    wrong = httpx.get(chat_api.url + "/v1/chat/completions", headers={**auth, "Accept-Language": "en"})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]
    with pytest.raises(openai.NotFoundError) as legacy:
        sdk.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    assert legacy.value.code == "unsupported_endpoint"
    conversations = httpx.post(chat_api.url + "/v1/conversations", json={}, headers={**auth, "Accept-Language": "en"})
    assert conversations.status_code == 404
    assert "does not serve /v1/conversations" in conversations.json()["error"]["message"]
    assert httpx.get(chat_api.url + "/api/v1/nothing").json() == {"detail": "Not Found"}, "other paths unchanged"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_4xx_reaches_the_client_unchanged(chat_api, client_key, stream):
    body = {"model": "fake-400", "messages": USER, "stream": stream}
    r = httpx.post(chat_api.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {client_key}"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": {"message": "Invalid value for 'temperature': the fake refuses this request.",
                                  "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}}
    assert r.headers["x-request-id"].startswith("req_fake_") and "retry-after" not in r.headers


def test_the_sdk_raises_the_upstreams_own_error(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="fake-400", messages=USER, stream=True)
    assert (refused.value.code, refused.value.param, refused.value.type) == (
        "invalid_value", "temperature", "invalid_request_error")


@pytest.mark.parametrize(("messages", "field"), [
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"role": "user", "content": None}], "messages[0].content"),
    ([{"role": "user", "content": {"text": "x"}}], "messages[0].content"),
    ([{"role": "user", "content": [{"text": "no type"}]}], "messages[0].content"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None}], "messages[1].content"),
    ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
])
def test_message_shapes_openai_refuses_are_refused_here(sdk, chat_api, messages, field):
    chat_api.clear_fake()
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert bad.value.param == field
    assert chat_api.fake_requests() == []


def test_message_shapes_openai_accepts_are_passed_on(sdk):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "짧게"}]},
        {"role": "user", "content": [{"type": "text", "text": "날씨"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "맑음"},
    ]
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=messages).choices
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": 7}])


def test_the_401_says_what_to_add_in_korean_and_english(narrow):
    r = httpx.post(narrow.url + "/api/v1/chat", json={"user_prompt": "안녕"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_client_key", r.text
    assert "Authorization: Bearer <클라이언트 키>" in r.json()["error"]
    assert "Authorization: Bearer <client key>" in r.json()["error"]
    bad = openai.OpenAI(base_url=narrow.url + "/v1", api_key="llms-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        bad.models.list()
    assert "Authorization: Bearer" in refused.value.message


# -- conversations and retries ----------------------------------------------------------------
def test_a_streamed_turn_is_stored_before_its_last_event_20_times(sdk, chat_api):
    """The race from the issue: a client that reads a stream to its end and sends the next
    turn at once must find the streamed turn in the history, every time."""
    for i in range(20):
        session = {"X-Session-Id": f"race-{os.getpid()}-{i}"}
        for chunk in sdk.chat.completions.create(model="gpt-4o-mini", stream=True, extra_headers=session,
                                                 messages=[{"role": "user", "content": f"첫 턴 {i}"}]):
            pass
        chat_api.clear_fake()
        sdk.chat.completions.create(model="gpt-4o-mini", extra_headers=session,
                                    messages=[{"role": "user", "content": f"둘째 턴 {i}"}])
        (seen,) = chat_api.fake_requests()
        assert seen["body"]["messages"][:2] == [{"role": "user", "content": f"첫 턴 {i}"},
                                                {"role": "assistant", "content": f"fake reply to: 첫 턴 {i}"}], i


def test_a_streamed_responses_turn_is_stored_before_response_completed(sdk, chat_api):
    for i in range(5):
        session = {"X-Session-Id": f"race-responses-{os.getpid()}-{i}"}
        with sdk.responses.stream(model="gpt-4o-mini", input=f"하나 {i}", extra_headers=session) as stream:
            for _ in stream:
                pass
        chat_api.clear_fake()
        sdk.responses.create(model="gpt-4o-mini", input=f"둘 {i}", extra_headers=session)
        (seen,) = chat_api.fake_requests()
        assert seen["body"]["input"][1] == {"role": "assistant", "content": f"fake reply to: 하나 {i}"}


def test_session_and_previous_response_id_do_not_send_the_context_twice(sdk, chat_api):
    session = {"X-Session-Id": f"both-{os.getpid()}"}
    first = sdk.responses.create(model="gpt-4o-mini", input="기억해: 7", extra_headers=session)
    chat_api.clear_fake()
    sdk.responses.create(model="gpt-4o-mini", input="뭐였지?", previous_response_id=first.id, extra_headers=session)
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["input"] == [{"role": "user", "content": "뭐였지?"}]
    assert seen["body"]["previous_response_id"] == first.id


def test_one_sdk_call_makes_at_most_three_upstream_attempts(chat_api, client_key):
    retrying = openai.OpenAI(base_url=chat_api.url + "/v1", api_key=client_key, max_retries=2)
    for model in ("fake-500", "fake-429"):
        chat_api.clear_fake()
        with pytest.raises(openai.APIStatusError):
            retrying.chat.completions.create(model=model, messages=USER)
        assert len(chat_api.fake_requests()) <= 3, model
    chat_api.clear_fake()
    r = httpx.post(chat_api.url + "/v1/chat/completions", json={"model": "fake-500", "messages": USER},
                   headers={"Authorization": f"Bearer {client_key}", "x-stainless-retry-count": "1"})
    assert r.status_code == 503 and len(chat_api.fake_requests()) == 1, "a client retry gets one attempt"
    assert "x-should-retry" not in r.headers


# -- /v1/models is what the upstream serves, CORS ------------------------------------------------
def test_models_are_what_the_upstream_serves_that_the_operator_allows(narrow):
    sdk = openai.OpenAI(base_url=narrow.url + "/v1", api_key=narrow.new_key("narrow"), max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")  # in the catalogue, not served
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("not-allowed-here")  # served, not allowed


def test_cors_echoes_listed_origins_only(narrow):
    preflight = httpx.options(narrow.url + "/v1/chat/completions", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-stainless-retry-count"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    key = narrow.new_key("browser")
    answer = httpx.post(narrow.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                        headers={"Origin": "https://tools.example.org", "Authorization": f"Bearer {key}"})
    assert answer.headers["access-control-allow-origin"] == "https://tools.example.org"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    stranger = httpx.post(narrow.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                          headers={"Origin": "https://evil.example", "Authorization": f"Bearer {key}"})
    assert "access-control-allow-origin" not in stranger.headers
    refused = httpx.options(narrow.url + "/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in refused.headers


def test_no_cors_headers_when_no_origin_is_configured(chat_api, client_key):
    r = httpx.post(chat_api.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER},
                   headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {client_key}"})
    assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)


# -- langchain-openai ---------------------------------------------------------------------------
def test_langchain_chat_stream_tools_and_embeddings(chat_api, client_key):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=chat_api.url + "/v1", api_key=client_key, max_retries=0)
    assert llm.invoke("랭체인").content == "fake reply to: 랭체인"
    assert "".join(str(c.content) for c in llm.stream("흐름")) == "fake reply to: 흐름"

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return "맑음"

    chat_api.clear_fake()
    assert llm.bind_tools([weather]).invoke("서울 날씨").content.startswith("fake reply to")
    (seen,) = chat_api.fake_requests()
    assert seen["body"]["tools"][0]["function"]["name"] == "weather"

    # check_embedding_ctx_length=False: no tokenizer download (the default sends token arrays, also served)
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=chat_api.url + "/v1", api_key=client_key,
                                  check_embedding_ctx_length=False, max_retries=0)
    vectors = embeddings.embed_documents(["문서 하나", "문서 둘"])
    assert len(vectors) == 2 and len(vectors[0]) == 8
    assert embeddings.embed_query("질문") != vectors[0]


def test_token_array_embeddings_are_served(sdk):
    r = sdk.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert [len(d.embedding) for d in r.data] == [8, 8] and r.usage.prompt_tokens == 5


def test_base64_vectors_are_relayed_byte_for_byte(chat_api, client_key):
    body = {"model": "text-embedding-3-small", "input": "바이트", "encoding_format": "base64"}
    via = httpx.post(chat_api.url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {client_key}"})
    direct = httpx.post(chat_api.fake_url + "/embeddings", json=body, headers={"Authorization": "Bearer sk-direct"})
    assert via.json()["data"] == direct.json()["data"]
    packed = base64.b64decode(via.json()["data"][0]["embedding"])
    assert len(struct.unpack("<8f", packed)) == 8


# -- existing clients of the original server ------------------------------------------------------
def test_seed_readme_snippet_verbatim_with_allow_anonymous_original(narrow):
    """The seed README's example as it was written (no key), under ALLOW_ANONYMOUS_ORIGINAL."""
    response = httpx.post(narrow.url + "/api/v1/chat", json={
        "request_id": "unique_session_id",
        "user_prompt": "Python의 특징을 설명해주세요.",
        "system_prompt": "당신은 친절한 프로그래밍 튜터입니다.",
        "max_tokens": 1000,
        "temperature": 0.7,
        "model": "gpt-4o-mini",
    }, headers={"X-Forwarded-For": "203.0.113.7"})
    result = response.json()
    assert response.status_code == 200, result
    assert result["output_text"] == "fake reply to: Python의 특징을 설명해주세요." and result["key_source"] == "server"
    with httpx.stream("POST", narrow.url + "/api/v1/chat/stream", json={"user_prompt": "스트림"},
                      headers={"X-Forwarded-For": "203.0.113.7"}) as streamed:
        assert streamed.status_code == 200 and b"event: done" in b"".join(streamed.iter_bytes())
    # /v1 still needs a key: the setting opens the original dialect only
    assert httpx.get(narrow.url + "/v1/models").status_code == 401
    assert httpx.get(narrow.url + "/v1/models", headers={"Authorization": "Bearer anonymous"}).status_code == 401


def test_keyless_original_callers_are_rate_limited_per_address(narrow):
    def call(address: str) -> httpx.Response:
        return httpx.post(narrow.url + "/api/v1/chat", json={"user_prompt": "한도"},
                          headers={"X-Forwarded-For": address})

    statuses = [call("198.51.100.1").status_code for _ in range(6)]
    assert statuses[:5] == [200] * 5 and statuses[5] == 429
    assert call("198.51.100.2").status_code == 200, "another address has its own allowance"


def test_sdk_users_can_say_anonymous_where_anonymous_use_is_allowed(chat_api):
    anonymous = openai.OpenAI(base_url=chat_api.url + "/v1", api_key="anonymous", max_retries=0)
    reply = anonymous.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    assert reply.parse().choices[0].message.content == "fake reply to: 안녕하세요"


def test_hot_chat_paths_with_a_query_string_another_method_or_a_trailing_slash(chat_api, client_key):
    # The chat routes served straight from ASGI match the exact method and path: a query
    # string is still the route, HEAD gets OpenAI's 405 from the router, a trailing slash is
    # the router's redirect to the route, never a 500.
    auth = {"Authorization": f"Bearer {client_key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    queried = httpx.post(chat_api.url + "/v1/chat/completions?trace=1", json=body, headers=auth)
    assert queried.status_code == 200 and queried.json()["object"] == "chat.completion"
    head = httpx.head(chat_api.url + "/v1/chat/completions", headers=auth)
    assert head.status_code == 405 and "POST" in head.headers["allow"]
    slashed = httpx.post(chat_api.url + "/v1/chat/completions/", json=body, headers=auth, follow_redirects=True)
    assert slashed.status_code == 200 and slashed.json()["object"] == "chat.completion"


# -- the chat routes answered before the middleware stack (chat_api.hot_routes) -------------------
def test_a_chat_route_answer_no_upstream_gave_an_id_gets_one_of_its_own(chat_api, client_key):
    """The /v1 chat routes are served ahead of the edge's middleware: their answers still carry
    a fresh ``x-request-id`` when no upstream sent one (here: refused before any upstream);
    the original dialect's routes get none, as before."""
    body = {"model": "gpt-4o-mini", "messages": USER}
    ids = set()
    for url in ("/v1/chat/completions", "/v1/chat/completions", "/v1/responses"):
        r = httpx.post(chat_api.url + url, json=body if "chat" in url else {"model": "gpt-4o-mini", "input": "x"},
                       headers={"Authorization": "Bearer llms-not-a-key"})
        assert r.status_code == 401
        assert re.fullmatch(r"req_[0-9a-f]{32}", r.headers["x-request-id"]), r.headers
        ids.add(r.headers["x-request-id"])
    assert len(ids) == 3
    original = httpx.post(chat_api.url + "/api/v1/chat", json={"user_prompt": "안녕"},
                          headers={"Authorization": "Bearer llms-not-a-key"})
    assert original.status_code == 401 and "x-request-id" not in original.headers
    served = httpx.post(chat_api.url + "/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {client_key}"})
    assert served.status_code == 200 and served.headers["x-request-id"].startswith("req_fake_")  # the upstream's
