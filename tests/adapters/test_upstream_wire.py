"""The direct upstream transport (aiohttp) against a raw socket server that answers with
scripted bytes: what the SDK's client handled and a hand-rolled client can get wrong."""
from __future__ import annotations

import asyncio
import gc
import gzip

import orjson
import pytest

from domain.adapters.openai_provider import OpenAiLlmProvider
from domain.errors import UpstreamBadResponse, UpstreamError
from domain.ports import StreamData, StreamDone, UpstreamApi, UpstreamRequest

# A socket or client session left open (aiohttp's "Unclosed client session") fails the test.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning")

KEY = "sk-test-wire"
CHAT = {"id": "chatcmpl-1", "model": "gpt-4o-mini", "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


class Raw:
    """A one-answer-per-request HTTP/1.1 server on a raw socket: ``answers`` pops the bytes
    for each request (a callable gets the request's head and may write itself)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.answers: list = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.handlers: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                self.heads.append(head)
                answer = self.answers.pop(0)
                if callable(answer):
                    if await answer(head, writer) is False:
                        return
                else:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass


def http(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def raw():
    server = Raw()
    await server.start()
    yield server
    await server.stop()


def provider(raw: Raw, **kw) -> OpenAiLlmProvider:
    return OpenAiLlmProvider(api_base=f"http://127.0.0.1:{raw.port}/v1", backoff_base=0.01, max_backoff=0.05, **kw)


def chat(**params) -> UpstreamRequest:
    return UpstreamRequest(UpstreamApi.CHAT_COMPLETIONS, "gpt-4o-mini", [{"role": "user", "content": "x"}], params)


async def test_a_gzip_answer_is_read_and_its_encoding_not_relayed(raw):
    raw.answers.append(http(gzip.compress(orjson.dumps(CHAT)), "Content-Encoding: gzip",
                            "Content-Type: application/json", "x-request-id: req_1"))
    p = provider(raw)
    try:
        reply = await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert reply.text == "hi"
    assert reply.headers == {"x-request-id": "req_1"}


async def test_a_proxy_named_with_credentials_gets_them(raw, monkeypatch):
    # HTTP_PROXY=http://user:pass@host:port is how a corporate proxy is named; the SDK's client
    # (httpx) sent the credentials as Proxy-Authorization.
    monkeypatch.setenv("HTTP_PROXY", f"http://gw:s3cret@127.0.0.1:{raw.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    raw.answers.append(http(orjson.dumps(CHAT)))
    p = OpenAiLlmProvider(api_base="http://upstream.example/v1", max_retries=0)
    try:
        reply = await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert reply.text == "hi"
    head = raw.heads[0].decode().lower()
    assert head.startswith("post http://upstream.example/v1/chat/completions ")
    assert "proxy-authorization: basic z3c6cznjcmv0" in head  # base64("gw:s3cret")


async def test_a_proxy_of_a_scheme_the_client_cannot_speak_is_an_upstream_error(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    p = OpenAiLlmProvider(api_base="http://upstream.example/v1", max_retries=0)
    try:
        with pytest.raises(UpstreamError):
            await p.complete(chat(), KEY)
    finally:
        await p.aclose()


def silent(answered: asyncio.Event):
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        answered.set()
        await asyncio.Event().wait()  # never answers; the test ends by the client's timeout
        return False
    return answer


async def test_an_upstream_that_never_answers_is_a_timeout_not_retried(raw):
    from domain.errors import UpstreamTimeout
    raw.answers += [silent(asyncio.Event()), silent(asyncio.Event())]
    p = provider(raw, timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeout):
            await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert len(raw.heads) == 1


async def test_a_stream_that_stops_between_chunks_ends_by_the_read_timeout(raw):
    event = b'data: {"id":"c1","model":"m","choices":[{"delta":{"content":"a"}}]}\n\n'

    async def one_chunk_then_silence(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.Event().wait()
        return False

    raw.answers.append(one_chunk_then_silence)
    p = provider(raw, timeout=0.3)
    got = []
    try:
        with pytest.raises(UpstreamBadResponse):
            async for item in p.stream(chat(), KEY):
                got.append(item)
    finally:
        await p.aclose()
    assert [i.text_delta for i in got if isinstance(i, StreamData)] == ["a"]


def chunked(*parts: bytes, end: bool = True):
    """An SSE answer written one part per TCP write (chunked encoding), then ended (or the
    connection dropped mid-body when ``end`` is False)."""
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                     b"x-request-id: req_s\r\n\r\n")
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        if end:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return end
    return answer


async def test_sse_split_byte_by_byte_with_comments_event_lines_and_crlf(raw):
    def ev(obj: dict) -> bytes:
        return b"event: chunk\r\ndata: " + orjson.dumps(obj) + b"\r\n\r\n"

    body = (b": keep-alive\r\n\r\n" + ev({"id": "c1", "model": "m1", "choices": [{"delta": {"content": "안녕"}}]})
            + b": ping\n\n" + ev({"id": "c1", "model": "m1", "choices": [{"delta": {"content": "하세요"}}]})
            + ev({"id": "c1", "model": "m1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}})
            + b"data: [DONE]\r\n\r\n")
    raw.answers.append(chunked(*(body[i:i + 1] for i in range(len(body)))))
    p = provider(raw)
    try:
        items = [item async for item in p.stream(chat(), KEY)]
    finally:
        await p.aclose()
    data = [i for i in items if isinstance(i, StreamData)]
    done = items[-1]
    assert "".join(i.text_delta for i in data) == "안녕하세요"
    assert data[0].headers == {"x-request-id": "req_s"}
    assert [i.final for i in data][-1] is True
    assert isinstance(done, StreamDone) and done.usage.input_tokens == 4 and done.usage.output_tokens == 2
    assert done.model == "m1" and done.response_id == "c1"


async def test_a_stream_dropped_mid_body_is_a_bad_response_after_what_came(raw):
    first = b'data: {"id":"c1","model":"m","choices":[{"delta":{"content":"a"}}]}\n\n'
    raw.answers.append(chunked(first, b'data: {"id":"c1","mo', end=False))
    p = provider(raw)
    got = []
    try:
        with pytest.raises(UpstreamBadResponse):
            async for item in p.stream(chat(), KEY):
                got.append(item)
    finally:
        await p.aclose()
    assert [i.text_delta for i in got] == ["a"]
    assert len(raw.heads) == 1  # a stream that started is never retried


async def test_a_long_header_line_from_the_upstream_is_read_not_retried_as_a_broken_connection(raw):
    # aiohttp stops at 8190 bytes a header line by default, where the SDK's client (h11)
    # read 16 KiB of headers: a proxy's long cookie or debug header then looked like a
    # broken connection and the billed POST was sent again, up to 3 times.
    raw.answers += [http(orjson.dumps(CHAT), "x-request-id: req_1", "set-cookie: __cf=" + "a" * 12000)] * 3
    p = provider(raw)
    try:
        reply = await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert reply.text == "hi" and reply.headers == {"x-request-id": "req_1"}
    assert len(raw.heads) == 1


async def test_all_proxy_is_honoured_when_no_scheme_proxy_is_named(raw, monkeypatch):
    # The SDK's client (httpx, trust_env) sent every scheme through ALL_PROXY when no
    # HTTP(S)_PROXY was set.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{raw.port}")
    raw.answers.append(http(orjson.dumps(CHAT)))
    p = OpenAiLlmProvider(api_base="http://upstream.example/v1", max_retries=0)
    try:
        reply = await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert reply.text == "hi"
    assert raw.heads[0].lower().startswith(b"post http://upstream.example/v1/chat/completions ")


async def test_a_call_after_shutdown_fails_as_unreachable_and_opens_nothing(raw):
    # At shutdown a late call (a background poll, a stream past the grace period) must not
    # open a new client session that nothing closes ("Unclosed client session"): the SDK's
    # closed client refused it as a connection error.
    raw.answers.append(http(orjson.dumps(CHAT)))
    p = provider(raw, max_retries=0)
    await p.complete(chat(), KEY)
    await p.aclose()
    with pytest.raises(UpstreamError) as refused:
        await p.complete(chat(), KEY)
    assert refused.value.code == "upstream_unreachable"
    assert len(raw.heads) == 1
    gc.collect()  # an unclosed session warns when collected (an error here: pytestmark)


async def test_more_concurrent_streams_than_pooled_connections_all_finish_with_usage(fake_openai):
    # The pool (max_connections) queues streams beyond it; each stream gives its connection
    # back when it ends, so every one of them finishes, with its own usage.
    p = OpenAiLlmProvider(api_base=fake_openai, max_connections=4, client_share=1.0)

    async def one(n: int) -> tuple[str, StreamDone]:
        items = [item async for item in p.stream(UpstreamRequest(
            UpstreamApi.CHAT_COMPLETIONS, "gpt-4o-mini", [{"role": "user", "content": f"stream {n}"}],
            client=f"client-{n}"), "sk-test-wire")]
        done = items[-1]
        assert isinstance(done, StreamDone)
        return "".join(i.text_delta for i in items if isinstance(i, StreamData)), done

    try:
        results = await asyncio.gather(*(one(n) for n in range(24)))
    finally:
        await p.aclose()
    for n, (text, done) in enumerate(results):
        assert text == f"fake reply to: stream {n}"
        assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0


async def test_an_https_upstream_through_a_proxy_tunnels_with_the_proxy_credentials_only(raw, monkeypatch):
    # CONNECT carries the proxy's credentials and never the upstream key; a proxy that
    # refuses the tunnel is an unreachable upstream (502), not a crash.
    monkeypatch.setenv("HTTPS_PROXY", f"http://gw:s3cret@127.0.0.1:{raw.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    raw.answers.append(http(b"", status="403 Forbidden"))
    p = OpenAiLlmProvider(api_base="https://upstream.example/v1", max_retries=0)
    try:
        with pytest.raises(UpstreamError) as refused:
            await p.complete(chat(), KEY)
    finally:
        await p.aclose()
    assert refused.value.code == "upstream_unreachable"
    head = raw.heads[0].decode().lower()
    assert head.startswith("connect upstream.example:443 ")
    assert "proxy-authorization: basic z3c6cznjcmv0" in head and KEY not in head
