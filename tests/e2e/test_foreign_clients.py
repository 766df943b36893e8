"""Foreign clients of the OpenAI surface through nginx, each a real client given only the
gateway's address: the official SDK on the routes added for real clients, langchain-openai
(chat, stream, tools, embeddings), Simon Willison's `llm` CLI (prompt, `-c`, streaming), the
litellm SDK (completion, stream, embedding) and openai-agents (Runner.run / run_streamed with a
function tool on both model APIs; OpenAIConversationsSession's clear 404); structured output
(response_format json_schema, text.format) and parallel tool calls through the SDK and
langchain-openai."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from typing import Literal

import httpx
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
)
from agents.memory import OpenAIConversationsSession
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.support.processes import BIN, ROOT

pytestmark = pytest.mark.e2e


def test_the_sdk_through_nginx_gets_openais_headers_and_errors(stack):
    sdk = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client_key, max_retries=0, timeout=60)
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["nginx", "경유"])
    assert len(raw.parse().data) == 2
    assert raw.headers["x-request-id"].startswith("req_fake_") and raw.headers["openai-processing-ms"]
    assert sdk.moderations.create(input="괜찮아요").results[0].flagged is False
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    created = sdk.responses.create(model="gpt-4o-mini", input="지울 것")
    assert sdk.responses.input_items.list(created.id).data
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("gpt-9-ultra")
    assert missing.value.code == "model_not_found"
    unknown = httpx.post(f"{stack.base_url}/v1/no-such-route", json={}, headers=stack.auth())
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "route_not_found"
    assert unknown.headers["x-request-id"]
    with httpx.stream("POST", f"{stack.base_url}/v1/chat/completions", headers=stack.auth(), timeout=60,
                      json={"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "헤더"}]}) as r:
        assert r.headers["x-llm-key-source"] == "server" and r.headers["x-ratelimit-limit-requests"]
        assert b": x-llm-cost-usd: " in b"".join(r.iter_bytes())


def test_langchain_through_nginx(stack):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    base = f"{stack.base_url}/v1"
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=base, api_key=stack.client_key, max_retries=0, timeout=60)
    assert llm.invoke("랭체인 nginx").content == "fake reply to: 랭체인 nginx"
    assert "".join(str(c.content) for c in llm.stream("스트림 nginx")) == "fake reply to: 스트림 nginx"
    assert llm.batch(["하나", "둘"])[1].content == "fake reply to: 둘"

    @tool
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    assert llm.bind_tools([lookup]).invoke("찾아줘").content.startswith("fake reply to")
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=base, api_key=stack.client_key,
                                  check_embedding_ctx_length=False, max_retries=0)
    assert len(embeddings.embed_documents(["문서"])[0]) == 8
    # the default path sends token arrays (tokenised locally); served the same way
    tokens = openai.OpenAI(base_url=base, api_key=stack.client_key, max_retries=0).embeddings.create(
        model="text-embedding-3-small", input=[[9906, 1917]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 2


# -- clients of their own, each given only the gateway's address and a client key --------------

def _new_key(stack, name: str) -> tuple[str, str]:
    """A fresh client key (and its id, to find its rows in the request log)."""
    r = httpx.post(stack.chat_api_urls[0] + "/admin/v1/keys", json={"name": f"{name}-{uuid.uuid4().hex[:8]}"},
                   headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=30)
    r.raise_for_status()
    return r.json()["key"], r.json()["item"]["id"]


def _logged(stack, key_id: str, count: int) -> list[dict]:
    """The request log's rows of one key, oldest first, once it holds ``count`` of them (a
    stream's row is written when its relay ends, just after the client read the last byte)."""
    deadline = time.monotonic() + 30
    while True:
        stack.flush_ledgers()
        items = httpx.get(stack.chat_api_urls[0] + "/admin/v1/requests", timeout=30,
                          params={"client_key_id": key_id, "page_size": 100},
                          headers={"Authorization": f"Bearer {stack.admin_token}"}).json()["items"]
        if len(items) >= count or time.monotonic() > deadline:
            return list(reversed(items))
        time.sleep(0.05)


def _fake_seen(stack) -> list[dict]:
    return httpx.get(stack.fake_root + "/_fake/requests", timeout=30).json()


def _answered(rows: list[dict], routes: list[str]) -> None:
    assert [r["route"] for r in rows] == routes
    assert all(r["status"] == 200 and r["key_source"] == "server" and r["error_code"] is None for r in rows), rows
    assert all(r["cost_usd"] not in (None, "0.00000000") for r in rows), rows


def test_the_llm_cli_through_nginx(stack, tmp_path):
    """Simon Willison's `llm`, configured as its docs say for an OpenAI-compatible server:
    extra-openai-models.yaml with api_base and api_key_name, the key stored with `llm keys set`."""
    key, key_id = _new_key(stack, "llm-cli")
    (tmp_path / "extra-openai-models.yaml").write_text(
        "- model_id: gateway-mini\n"
        "  model_name: gpt-4o-mini\n"
        f"  api_base: \"{stack.base_url}/v1\"\n"
        "  api_key_name: gateway\n")
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    env.pop("OPENAI_API_KEY", None)  # the stored key is the only one it can use

    def llm(*args: str) -> str:
        out = subprocess.run([str(BIN / "llm"), *args], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    llm("keys", "set", "gateway", "--value", key)
    httpx.delete(stack.fake_root + "/_fake/requests")
    assert llm("-m", "gateway-mini", "--no-stream", "엘엘엠 첫 질문") == "fake reply to: 엘엘엠 첫 질문"
    assert llm("-c", "이어지는 질문") == "fake reply to: 이어지는 질문"  # -c streams, as llm does by default
    first, second = [r["body"] for r in _fake_seen(stack) if r["path"] == "/v1/chat/completions"]
    assert first["model"] == "gpt-4o-mini" and not first.get("stream") and second["stream"] is True
    # -c replayed the earlier turn: the upstream got it as context
    assert second["messages"] == [{"role": "user", "content": "엘엘엠 첫 질문"},
                                  {"role": "assistant", "content": "fake reply to: 엘엘엠 첫 질문"},
                                  {"role": "user", "content": "이어지는 질문"}]
    logged = json.loads(llm("logs", "--json", "-n", "2"))
    assert len({entry["conversation_id"] for entry in logged}) == 1  # one conversation in llm's own log
    assert all(entry["input_tokens"] and entry["output_tokens"] for entry in logged)  # the gateway's usage
    _answered(_logged(stack, key_id, 2), ["/v1/chat/completions"] * 2)


class Plan(BaseModel):
    """A structured answer with the shapes clients ask for: text, a list, an enum, a flag and
    an optional number (an anyOf with null)."""
    title: str
    steps: list[str]
    priority: Literal["low", "high"]
    done: bool
    estimate_hours: int | None


def test_structured_output_through_nginx(stack):
    """response_format json_schema (chat, plain and streamed) and text.format (Responses) from
    the SDK's parse helpers, and langchain's with_structured_output: the schema reaches the
    upstream unchanged and its JSON answer reaches the client, parsed into the model."""
    from langchain_openai import ChatOpenAI

    key, key_id = _new_key(stack, "structured")
    sdk = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    expected = Plan(title="이사 계획", steps=["이사 계획"], priority="low", done=True, estimate_hours=1)
    httpx.delete(stack.fake_root + "/_fake/requests")
    plain = sdk.chat.completions.parse(model="gpt-4o-mini", response_format=Plan,
                                       messages=[{"role": "user", "content": "이사 계획"}])
    assert plain.choices[0].message.parsed == expected
    with sdk.chat.completions.stream(model="gpt-4o-mini", response_format=Plan,
                                     messages=[{"role": "user", "content": "이사 계획"}]) as stream:
        assert stream.get_final_completion().choices[0].message.parsed == expected
    assert sdk.responses.parse(model="gpt-4o-mini", input="이사 계획", text_format=Plan).output_parsed == expected
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    assert llm.with_structured_output(Plan).invoke("이사 계획") == expected
    seen = [r["body"] for r in _fake_seen(stack)]
    formats = [b.get("response_format") or b["text"]["format"] for b in seen]
    assert [f["type"] for f in formats] == ["json_schema"] * 4
    assert all((f.get("json_schema") or f)["name"] == "Plan" for f in formats)
    assert all((f.get("json_schema") or f)["schema"]["properties"]["priority"]["enum"] == ["low", "high"]
               for f in formats)
    _answered(_logged(stack, key_id, 4), ["/v1/chat/completions", "/v1/chat/completions", "/v1/responses",
                                          "/v1/chat/completions"])


WEATHER = {"name": "get_weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "description": "Local time in a timezone.",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}
BOTH = "get_weather 와 get_time 을 함께 불러줘"


def test_parallel_tool_calls_through_nginx(stack):
    """Several tools asked for in one turn: the SDK (chat plain and streamed, Responses) and
    langchain's bind_tools get every call in one answer, with distinct ids; the results go
    back in one turn and the text answer follows. parallel_tool_calls=false gives one call."""
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    key, key_id = _new_key(stack, "parallel-tools")
    sdk = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    tools = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]
    asked = [{"role": "user", "content": BOTH}]
    reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=asked, tools=tools)
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": BOTH}), ("get_time", {"timezone": BOTH})]
    assert len({c.id for c in calls}) == 2
    with sdk.chat.completions.stream(model="gpt-4o-mini", messages=asked, tools=tools) as stream:
        streamed = stream.get_final_completion().choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in streamed] == [
        (c.function.name, c.function.arguments) for c in calls]
    assert len({c.id for c in streamed}) == 2
    single = sdk.chat.completions.create(model="gpt-4o-mini", messages=asked, tools=tools, parallel_tool_calls=False)
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]
    results = [{"role": "tool", "tool_call_id": c.id, "content": f"{c.function.name}: ok"} for c in calls]
    answer = sdk.chat.completions.create(model="gpt-4o-mini", tools=tools, messages=[
        *asked, reply.choices[0].message.model_dump(exclude_none=True), *results])
    assert answer.choices[0].message.content == f"fake reply to: {BOTH}"[:55]

    responses = sdk.responses.create(model="gpt-4o-mini", input=BOTH,
                                     tools=[{"type": "function", **WEATHER}, {"type": "function", **TIME}])
    assert [(o.type, getattr(o, "name", None)) for o in responses.output] == [
        ("function_call", "get_weather"), ("function_call", "get_time")]

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return f"{city}: 맑음"

    @tool
    def get_time(timezone: str) -> str:
        """Local time in a timezone."""
        return f"{timezone}: 12:00"

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    bound = llm.bind_tools([get_weather, get_time])
    message = bound.invoke(BOTH)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": BOTH}), ("get_time", {"timezone": BOTH})]
    outputs = [ToolMessage(content={"get_weather": get_weather, "get_time": get_time}[c["name"]].invoke(c["args"]),
                           tool_call_id=c["id"]) for c in message.tool_calls]
    assert bound.invoke([("user", BOTH), message, *outputs]).content == f"fake reply to: {BOTH}"[:55]
    _answered(_logged(stack, key_id, 7), ["/v1/chat/completions"] * 4 + ["/v1/responses"]
              + ["/v1/chat/completions"] * 2)


LITELLM_PYTHON = ROOT / ".bench-venv" / "litellm" / "bin" / "python"


def test_the_litellm_sdk_through_nginx(stack):
    """litellm.completion (plain and streamed) and litellm.embedding with api_base = the gateway,
    from the venv scripts/litellm-venv.sh builds (`make test` builds it first)."""
    if not LITELLM_PYTHON.exists():
        pytest.skip("litellm's venv is missing: bash scripts/litellm-venv.sh (make test runs it)")
    key, key_id = _new_key(stack, "litellm-sdk")
    out = subprocess.run([str(LITELLM_PYTHON), str(ROOT / "tests" / "support" / "litellm_client.py"),
                          f"{stack.base_url}/v1"], env={**os.environ, "LLM_GATEWAY_KEY": key},
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["completion"] == "fake reply to: 라이트엘엘엠" and got["completion_usage"] > 0
    assert got["stream"] == "fake reply to: 흘려서" and got["stream_chunks"] >= 3
    assert got["embeddings"] == [8, 8] and got["embedding_tokens"] == 3  # the fake: ceil(5 / 4) + ceil(4 / 4)
    _answered(_logged(stack, key_id, 3), ["/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings"])


def _agent_tools(called: list[str]):
    @function_tool
    def weather(city: str) -> str:
        """Today's weather in a city."""
        called.append(city)
        return f"{city}: 맑음, 21도"

    return [weather]


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_openai_agents_run_and_run_streamed_with_a_function_tool(stack, api):
    """openai-agents on an AsyncOpenAI client with our base_url: the model must call the tool
    (tool_choice="required"), the agent runs it, sends its result back and gets the answer."""
    key, key_id = _new_key(stack, f"agents-{api}")
    called: list[str] = []

    async def scenario() -> tuple[str, str, list[str]]:
        client = AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
        model = (OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client) if api == "chat_completions"
                 else OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
        agent = Agent(name="날씨 도우미", instructions="날씨는 도구로 확인하세요.", tools=_agent_tools(called),
                      model=model, model_settings=ModelSettings(tool_choice="required"))
        config = RunConfig(tracing_disabled=True)  # traces would go to OpenAI's own endpoint
        ran = await Runner.run(agent, "서울 날씨 알려줘", run_config=config)
        streamed = Runner.run_streamed(agent, "부산 날씨 알려줘", run_config=config)
        events = [e.name async for e in streamed.stream_events() if e.type == "run_item_stream_event"]
        await client.close()
        return str(ran.final_output), str(streamed.final_output), events

    httpx.delete(stack.fake_root + "/_fake/requests")
    plain, streamed, events = asyncio.run(scenario())
    assert plain == "fake reply to: 서울 날씨 알려줘" and streamed == "fake reply to: 부산 날씨 알려줘"
    assert called == ["서울 날씨 알려줘", "부산 날씨 알려줘"]  # the tool ran with the model's arguments
    assert events == ["tool_called", "tool_output", "message_output_created"]
    # the tool's result went back upstream through the gateway on the second turn of each run
    path = "/v1/chat/completions" if api == "chat_completions" else "/v1/responses"
    sent = [r["body"] for r in _fake_seen(stack) if r["path"] == path]
    assert [bool(b.get("stream")) for b in sent] == [False, False, True, True]
    results = [m for b in sent for m in (b.get("messages") or b.get("input") or [])
               if m.get("role") == "tool" or m.get("type") == "function_call_output"]
    assert [m.get("content") or m.get("output") for m in results] == ["서울 날씨 알려줘: 맑음, 21도",
                                                                      "부산 날씨 알려줘: 맑음, 21도"]
    _answered(_logged(stack, key_id, 4), [path] * 4)


def test_openai_agents_conversations_session_gets_an_openai_shaped_404(stack):
    """/v1/conversations is not served (documented): OpenAIConversationsSession fails with the
    SDK's NotFoundError carrying our code and a message that says so, not with a crash."""
    key, _ = _new_key(stack, "agents-session")

    async def scenario() -> None:
        client = AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key=key, max_retries=0, timeout=60)
        agent = Agent(name="기억", model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
        try:
            await Runner.run(agent, "기억해 줘", session=OpenAIConversationsSession(openai_client=client),
                             run_config=RunConfig(tracing_disabled=True))
        finally:
            await client.close()

    httpx.delete(stack.fake_root + "/_fake/requests")
    with pytest.raises(openai.NotFoundError) as refused:
        asyncio.run(scenario())
    assert refused.value.status_code == 404 and refused.value.code == "unsupported_endpoint"
    assert refused.value.type == "invalid_request_error" and "/v1/conversations" in refused.value.message
    assert refused.value.response.headers["x-request-id"]
    assert _fake_seen(stack) == []  # nothing went upstream, not even the agent's turn
