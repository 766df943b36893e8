"""OpenAiLlmProvider against the project's fake OpenAI server (tests/support/fake_openai.py):
usage parsing, streams that always carry usage, error mapping and retries."""
from __future__ import annotations

import asyncio
import socket
import uuid
from urllib.parse import urlsplit

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from domain.adapters.openai_provider import OpenAiLlmProvider
from domain.errors import UpstreamError, UpstreamTimeout
from domain.ports import StreamData, StreamDone, UpstreamApi, UpstreamRequest
from domain.usage import TokenUsage

KEY = "sk-test-provider"
PROMPT = "hello world!"  # 12 chars → the fake counts ceil(12 / 4) = 3 prompt tokens
REPLY = "fake reply to: hello world!"


def provider(base: str, retries: list[str], max_retries: int = 2) -> OpenAiLlmProvider:
    return OpenAiLlmProvider(api_base=base, max_retries=max_retries, backoff_base=0.01, max_backoff=0.05,
                             on_retry=retries.append)


def req(api: UpstreamApi, model: str = "gpt-4o-mini", content: str = PROMPT, **params) -> UpstreamRequest:
    return UpstreamRequest(api, model, [{"role": "user", "content": content}], params)


async def test_complete_on_the_responses_api_parses_text_and_usage(fake_openai):
    retries: list[str] = []
    p = provider(fake_openai, retries)
    try:
        # "o…" models report 5 reasoning tokens, "…cache…" ones half the prompt (3 // 2 = 1) cached;
        # completion = min(max_output_tokens 7, 12) = 7.
        reply = await p.complete(req(UpstreamApi.RESPONSES, "o3-cache", max_output_tokens=7), KEY)
    finally:
        await p.aclose()
    assert reply.text == REPLY
    assert reply.usage == TokenUsage(input_tokens=3, output_tokens=7, cached_input_tokens=1, reasoning_tokens=5)
    assert reply.model == "o3-cache"
    assert retries == []


async def test_complete_on_chat_completions(fake_openai):
    p = provider(fake_openai, [])
    try:
        reply = await p.complete(req(UpstreamApi.CHAT_COMPLETIONS, max_tokens=50), KEY)
    finally:
        await p.aclose()
    assert reply.text == REPLY
    assert reply.usage == TokenUsage(input_tokens=3, output_tokens=12)


@pytest.mark.parametrize("api", [UpstreamApi.CHAT_COMPLETIONS, UpstreamApi.RESPONSES])
async def test_stream_relays_deltas_and_always_ends_with_usage(fake_openai, api):
    # The client did not ask for usage; the gateway asks anyway so that spend is exact.
    p = provider(fake_openai, [])
    try:
        events = [e async for e in p.stream(req(api, max_tokens=50, max_output_tokens=50), KEY)]
    finally:
        await p.aclose()
    *data, done = events
    assert all(isinstance(e, StreamData) for e in data)
    assert isinstance(done, StreamDone)
    assert "".join(e.text_delta for e in data) == REPLY
    assert done.usage == TokenUsage(input_tokens=3, output_tokens=12)
    if api is UpstreamApi.CHAT_COMPLETIONS:
        assert sum(1 for e in data if e.usage_only) == 1


@pytest.mark.parametrize(("key", "status", "code"), [("sk-invalid-abc", 401, None),
                                                     ("sk-quota-abc", 429, "insufficient_quota")])
async def test_refused_keys_raise_upstream_errors_that_reject_the_key_without_retrying(fake_openai, key, status, code):
    retries: list[str] = []
    p = provider(fake_openai, retries)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(req(UpstreamApi.RESPONSES), key)
    finally:
        await p.aclose()
    assert info.value.upstream_status == status
    assert info.value.rejects_key is True
    if code:
        assert info.value.upstream_code == code
    assert retries == []


async def test_server_errors_are_retried_then_raised_without_rejecting_the_key(fake_openai):
    retries: list[str] = []
    p = provider(fake_openai, retries, max_retries=1)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(req(UpstreamApi.CHAT_COMPLETIONS, "fake-500"), KEY)
    finally:
        await p.aclose()
    assert info.value.upstream_status == 500
    assert info.value.rejects_key is False
    assert retries == ["500"]


async def test_rate_limit_is_not_a_key_rejection(fake_openai):
    p = provider(fake_openai, [], max_retries=0)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(req(UpstreamApi.CHAT_COMPLETIONS, "fake-429"), KEY)
    finally:
        await p.aclose()
    assert info.value.upstream_status == 429
    assert info.value.rejects_key is False
    assert info.value.retry_after == 1.0


async def test_a_flaky_upstream_succeeds_after_one_retry(fake_openai):
    retries: list[str] = []
    p = provider(fake_openai, retries)
    try:
        reply = await p.complete(req(UpstreamApi.CHAT_COMPLETIONS, "fake-flaky", content=f"flaky {uuid.uuid4().hex}"),
                                 KEY)
    finally:
        await p.aclose()
    assert reply.text.startswith("fake reply to: flaky ")
    assert retries == ["500"]


def test_the_proxy_is_the_environments_read_once(monkeypatch):
    # The direct transport reads HTTPS_PROXY / NO_PROXY when it is made, as the SDK's client
    # honoured them, instead of on every request.
    from domain.adapters.openai_provider import _proxy_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert _proxy_for("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert _proxy_for("http://127.0.0.1:8000/v1") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert _proxy_for("https://api.openai.com/v1") is None


def test_sse_lines_end_at_lf_crlf_or_a_lone_cr():
    from domain.adapters.openai_provider import _split_lines

    assert list(_split_lines(b"data: {}\r")) == ["data: {}"]
    assert list(_split_lines(b"data: a\rdata: b")) == ["data: a", "data: b"]
    assert list(_split_lines("data: 한국어".encode())) == ["data: 한국어"]


class HangingResolver(AbstractResolver):
    """A name server that does not answer until told to; then every name is 127.0.0.1."""

    def __init__(self) -> None:
        self.asked = 0
        self.answer = asyncio.Event()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked += 1
        await self.answer.wait()
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


async def test_a_hanging_name_lookup_is_a_connection_error_bounded_by_the_connect_timeout(fake_openai):
    """The lookup is part of connecting: a name server that never answers fails the request
    as an unreachable upstream (retried as a connection error is), not after the minute-long
    read timeout as a timeout."""
    resolver = HangingResolver()
    port = urlsplit(fake_openai).port
    retries: list[str] = []
    p = OpenAiLlmProvider(api_base=f"http://upstream.invalid:{port}/v1", timeout=120.0, connect_timeout=0.2,
                          max_retries=1, backoff_base=0.01, max_backoff=0.05, on_retry=retries.append,
                          resolver=resolver)
    try:
        # (the guard only turns a regression into a failure instead of a two-minute hang)
        with pytest.raises(UpstreamError) as caught:
            await asyncio.wait_for(p.complete(req(UpstreamApi.CHAT_COMPLETIONS), KEY), 20)
        assert caught.value.code == "upstream_unreachable" and not isinstance(caught.value, UpstreamTimeout)
        assert caught.value.upstream_status == 502 and caught.value.connect_failed
        assert retries == ["connection"] and resolver.asked == 2  # retried as any connection error
        resolver.answer.set()  # the name server answers again: the same provider gets through
        reply = await p.complete(req(UpstreamApi.CHAT_COMPLETIONS, max_tokens=5), KEY)
        assert reply.text == REPLY
    finally:
        await p.aclose()
