"""The upstream over HTTP: OpenAI's REST API (and APIs shaped like it).

In the OpenAI dialect the gateway passes bytes through: the body goes out pre-serialised
and comes back as the upstream's own bytes, so no SDK type would be built for it. The
transport is therefore a plain aiohttp client (``_DirectTransport``), the cheapest per
request of the clients measured (bench/README.md, "Levers"); an Azure deployment keeps the
official SDK's client (``_SdkTransport``), whose URL and auth rules it follows. Both answer
in the same terms (``_Answer``, ``_Refused``, ``_TimedOut``, ``_Unreachable``), so the
rules below are one:

Retries live here, in one place (the SDK's own are off), so they can skip
``insufficient_quota``, stop at the first streamed byte, and be counted. An upstream error
body is read as the SDK reads it (its ``error`` object, else the body), so a 4xx reaches the
client unchanged whichever transport carried it.
"""
from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx2
import openai
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from domain.errors import UpstreamBadResponse, UpstreamError, UpstreamTimeout
from domain.ports import StreamData, StreamDone, UpstreamApi, UpstreamReply, UpstreamRequest, passed_through
from domain.upstream_guard import CircuitBreaker, UpstreamShares
from domain.usage import TokenUsage

_PATHS = {UpstreamApi.RESPONSES: "/responses", UpstreamApi.CHAT_COMPLETIONS: "/chat/completions",
          UpstreamApi.EMBEDDINGS: "/embeddings", UpstreamApi.MODERATIONS: "/moderations"}
_ITEMS = {UpstreamApi.RESPONSES: "input", UpstreamApi.CHAT_COMPLETIONS: "messages"}
_FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
_MAX_HEADER_BYTES = 16 * 1024  # h11's limit for an answer's headers, which the SDK's client used


def usage_from(api: UpstreamApi, usage: Any) -> TokenUsage | None:
    """The upstream's usage object, normalised (``TokenUsage.reported``); None when absent."""
    if not usage:
        return None
    if not isinstance(usage, dict):
        return TokenUsage(anomaly="usage_invalid")

    def detail(name: str, key: str) -> Any:
        d = usage.get(name)
        return d.get(key) if isinstance(d, dict) else 0

    if api is UpstreamApi.RESPONSES:
        return TokenUsage.reported(usage.get("input_tokens"), usage.get("output_tokens"),
                                   detail("input_tokens_details", "cached_tokens"),
                                   detail("output_tokens_details", "reasoning_tokens"))
    return TokenUsage.reported(usage.get("prompt_tokens"), usage.get("completion_tokens"),
                               detail("prompt_tokens_details", "cached_tokens"),
                               detail("completion_tokens_details", "reasoning_tokens"))


def responses_text(body: dict[str, Any]) -> str:
    output_text = body.get("output_text")
    if isinstance(output_text, str):
        return output_text
    parts = []
    for item in body.get("output") or []:
        for content in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(content, dict) and content.get("type") == "output_text":
                parts.append(content.get("text") or "")
    return "".join(parts)


def chat_text(body: dict[str, Any]) -> str:
    choices = body.get("choices") or []
    return ((choices[0].get("message") or {}).get("content") or "") if choices else ""


def _upstream_error(status: int, body: Any, retry_after: float | None,
                    headers: Mapping[str, str] | None = None) -> UpstreamError:
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = err.get("code") or err.get("type")
    message = str(err.get("message") or f"HTTP {status}")
    # The body is kept as sent only when it is OpenAI's error shape (a client relays it as is).
    raw = body if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    return UpstreamError("upstream_error", upstream_status=status, upstream_code=code, retry_after=retry_after,
                         body=raw, headers=headers, status=status, message=message)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")  # both transports' header maps ignore case
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# -- transports ------------------------------------------------------------------------------

async def _nothing() -> None:
    return None


@dataclass(slots=True)
class _Answer:
    """A 2xx answer: its headers, and either its body (``content``) or its lines (a stream,
    read as they come; ``close`` gives the connection back)."""

    headers: Mapping[str, str]
    content: bytes = b""
    lines: AsyncIterator[str] | None = None
    close: Callable[[], Awaitable[None]] = _nothing


class _Refused(Exception):
    """The upstream answered 4xx/5xx. ``body`` as the SDK reads it: the JSON body's
    ``error`` member when it has one, else the JSON body, else its text."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


class _TimedOut(Exception):
    """Connecting, waiting for a pooled connection, or a read took longer than allowed.
    ``sent``: the request had gone out (a read timed out, not the connection)."""

    def __init__(self, sent: bool = False) -> None:
        super().__init__(sent)
        self.sent = sent


class _Unreachable(Exception):
    """The connection failed or broke before the answer's body was read. ``connecting``: it
    was never made (refused, name not resolved), so nothing of the request was sent."""

    def __init__(self, connecting: bool = False) -> None:
        super().__init__()
        self.connecting = connecting


class _BrokenAnswer(Exception):
    """A 2xx whose body broke on the way: the upstream did (and billed) the work, so this is
    an unreadable answer, never a connection failure to retry."""


class _Transport(Protocol):
    async def exchange(self, method: str, path: str, headers: Mapping[str, str], content: bytes | None,
                       stream: bool) -> _Answer: ...

    async def aclose(self) -> None: ...


class _SdkTransport:
    """The official SDK's client (an Azure deployment's: the SDK builds its URL and auth)."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client

    async def exchange(self, method: str, path: str, headers: Mapping[str, str], content: bytes | None,
                       stream: bool) -> _Answer:
        options: openai.RequestOptions = {"headers": dict(headers)}
        try:
            if method == "GET":
                response = await self._client.get(path, cast_to=httpx2.Response, options=options)
            elif method == "DELETE":
                response = await self._client.delete(path, cast_to=httpx2.Response, options=options)
            else:
                response = await self._client.post(path, cast_to=httpx2.Response, content=content, options=options,
                                                   stream=stream)
        except openai.APIStatusError as exc:
            raise _Refused(exc.status_code, exc.body, exc.response.headers) from None
        except openai.APITimeoutError as timed_out:
            raise _TimedOut(sent=not isinstance(timed_out.__cause__, httpx2.ConnectTimeout | httpx2.PoolTimeout)) \
                from None
        except openai.APIConnectionError as exc:
            raise _Unreachable(connecting=isinstance(exc.__cause__, httpx2.ConnectError)) from None
        if stream:
            return _Answer(response.headers, lines=_httpx_lines(response), close=response.aclose)
        return _Answer(response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.close()


class _BoundedResolver(AbstractResolver):
    """A name lookup bounded by the connect timeout. aiohttp's ``sock_connect`` bounds the
    TCP/TLS connect only, and its ``connect`` (which includes the lookup) is also the wait for
    a pooled connection, kept at the long read timeout; so a name server that never answers
    would hold a request for the whole read timeout. Past the bound the lookup fails as a
    name that does not resolve does: a connection error (``upstream_unreachable``, retried
    and failed over like one)."""

    def __init__(self, inner: AbstractResolver, timeout: float) -> None:
        self._inner, self._timeout = inner, timeout

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._inner.resolve(host, port, family)
        except TimeoutError:
            # an errno, so aiohttp reports a DNS failure (ClientConnectorDNSError), not a timeout
            raise socket.gaierror(socket.EAI_AGAIN, f"no answer to the name lookup in {self._timeout:g} s") from None

    async def close(self) -> None:
        await self._inner.close()


class _DirectTransport:
    """HTTP/1.1 with keep-alive to ``api_base`` on aiohttp: the request is the bytes given
    and the Authorization header; the answer is the upstream's bytes. One session per event
    loop (made on first use: aiohttp binds a session to the loop that runs it)."""

    def __init__(self, api_base: str, timeout: float, connect_timeout: float, max_connections: int,
                 resolver: AbstractResolver | None = None) -> None:
        self._base = api_base.rstrip("/")
        self._resolver, self._connect_timeout = resolver, connect_timeout
        # httpx's Timeout(timeout, connect=...) in aiohttp's terms: ``connect`` bounds the wait
        # for a pooled connection, ``sock_connect`` the TCP/TLS connect, ``sock_read`` each read;
        # the name lookup is bounded by the connect timeout too (_BoundedResolver).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=connect_timeout,
                                              sock_read=timeout)
        self._max_connections = max_connections
        self._proxy = _proxy_for(self._base)
        self._session: aiohttp.ClientSession | None = None
        self._lookups: list[AbstractResolver] = []  # resolvers made here (a connector closes only its own)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False  # by aclose: for good, as the SDK's closed client was

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                               resolver=self._bounded_resolver()),
                # The environment's proxy is read once (``_proxy_for``): aiohttp's trust_env
                # would read it, and ~/.netrc, in a thread on every request.
                timeout=self._timeout, trust_env=False, headers={"Accept": "application/json"},
                # aiohttp's default stops at an 8 KiB header line, which it reports as a broken
                # connection (so the POST would be sent again); the SDK's client (h11) read up
                # to 16 KiB of headers, and proxies in front of an upstream send long cookies.
                max_line_size=_MAX_HEADER_BYTES, max_field_size=_MAX_HEADER_BYTES)
            self._loop = loop
        return self._session

    async def exchange(self, method: str, path: str, headers: Mapping[str, str], content: bytes | None,
                       stream: bool) -> _Answer:
        sent = {**headers, "Content-Type": "application/json"} if content is not None else headers
        if self._closed:  # a late call at shutdown: a new session here would never be closed
            raise _Unreachable
        try:
            response = await self._session_now().request(method, self._base + path, data=content, headers=sent,
                                                         proxy=self._proxy)
        except TimeoutError as timed_out:  # a read timing out (not the connection): the request had gone out
            raise _TimedOut(sent=isinstance(timed_out, aiohttp.SocketTimeoutError)) from None
        except aiohttp.ClientConnectorError:  # refused, name not resolved: nothing was sent
            raise _Unreachable(connecting=True) from None
        except (aiohttp.ClientError, OSError):
            raise _Unreachable from None
        if stream and response.status < 400:
            return _Answer(response.headers, lines=_aiohttp_lines(response), close=_releaser(response))
        try:
            body = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as broke:
            if response.status < 400:
                raise _BrokenAnswer from None
            raise (_TimedOut() if isinstance(broke, TimeoutError) else _Unreachable()) from None
        finally:
            response.release()
        if response.status >= 400:
            raise _Refused(response.status, _sdk_error_body(body), response.headers)
        return _Answer(response.headers, body)

    def _bounded_resolver(self) -> AbstractResolver:
        if self._resolver is not None:
            return _BoundedResolver(self._resolver, self._connect_timeout)
        made = aiohttp.DefaultResolver()
        self._lookups.append(made)
        return _BoundedResolver(made, self._connect_timeout)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
        for made in self._lookups:
            await made.close()
        self._lookups.clear()


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY / HTTP_PROXY, else ALL_PROXY;
    NO_PROXY), as the SDK's client (httpx) would use it; None for none."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]  # not in typeshed
            host.rsplit(":", 1)[0] if not host.endswith("]") else host):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(scheme.lower()) or proxies.get("all")


def _releaser(response: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        response.release()  # a body not read to its end closes the connection instead
    return close


def _sdk_error_body(raw: bytes) -> Any:
    """An error body as the SDK hands it over (``APIStatusError.body``)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return body.get("error", body) if isinstance(body, dict) else body


def _split_lines(block: bytes) -> Iterable[str]:
    """One line ended by LF (a CR before it dropped); a lone CR ends a line too, as in SSE."""
    if block.endswith(b"\r"):
        block = block[:-1]
    text = block.decode("utf-8", "replace")
    return text.split("\r") if "\r" in text else (text,)


async def _aiohttp_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines as they arrive (no length limit: a Responses ``response.completed``
    event carries the whole answer); a connection that breaks mid-body is the upstream's bad
    answer, not a crash of ours."""
    pending = b""
    try:
        async for chunk in response.content.iter_any():
            blocks = (pending + chunk).split(b"\n")
            pending = blocks.pop()
            for block in blocks:
                for line in _split_lines(block):
                    yield line
    except (TimeoutError, aiohttp.ClientError, OSError):
        raise UpstreamBadResponse("upstream_bad_response", upstream_status=502) from None
    if pending:
        for line in _split_lines(pending):
            yield line


class OpenAiLlmProvider:
    def __init__(self, *, api_base: str, timeout: float = 60.0, connect_timeout: float = 5.0,
                 max_retries: int = 2, backoff_base: float = 0.25, max_backoff: float = 8.0,
                 max_connections: int = 200, client_share: float = 0.25, breaker_threshold: int = 5,
                 breaker_cooldown: float = 30.0, breaker_min_clients: int = 2,
                 on_retry: Callable[[str], None] | None = None,
                 on_circuit_open: Callable[[str], None] | None = None,
                 client: openai.AsyncOpenAI | None = None, resolver: AbstractResolver | None = None) -> None:
        # A prebuilt client (an Azure deployment's) keeps the SDK's own URL and auth rules.
        self._transport: _Transport = _SdkTransport(client) if client is not None else _DirectTransport(
            api_base, timeout, connect_timeout, max_connections, resolver)
        self._max_retries, self._backoff_base, self._max_backoff = max_retries, backoff_base, max_backoff
        self._on_retry = on_retry or (lambda reason: None)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, min_clients=breaker_min_clients,
                                      on_open=on_circuit_open)
        self.shares = UpstreamShares(max_connections, client_share)

    async def aclose(self) -> None:
        await self._transport.aclose()

    @staticmethod
    def _headers(api_key: str) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def _body(self, request: UpstreamRequest, stream: bool) -> bytes:
        body: dict[str, Any] = {**request.params, "model": request.model}
        if request.api in _ITEMS:
            body[_ITEMS[request.api]] = request.messages
        if stream:
            body["stream"] = True
            if request.api is UpstreamApi.CHAT_COMPLETIONS:
                # Always ask for usage, so spend is exact even when the client did not ask.
                body["stream_options"] = {**(request.params.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return orjson.dumps(body)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff)
        return min(self._max_backoff, self._backoff_base * 2.0**attempt) * (0.5 + random.random() / 2)

    async def _send(self, method: str, path: str, api_key: str, content: bytes | None, stream: bool,
                    client: str | None = None, retries: bool = True) -> _Answer:
        """One exchange under the circuit breaker (see ``CircuitBreaker`` for what counts)."""
        admission = self.breaker.admit(api_key, client)
        verdict: bool | None = None
        try:
            response = await self._send_with_retries(method, path, api_key, content, stream,
                                                     self._max_retries if retries else 0)
            verdict = True
            return response
        except UpstreamBadResponse:
            verdict = True  # it answered: the circuit counts failures to answer, as for an unreadable body
            raise
        except UpstreamError as error:
            verdict = (error.upstream_status or 500) < 500
            raise
        finally:  # a cancelled call settles with no verdict, freeing a half-open probe
            self.breaker.record(admission, verdict)

    async def _send_with_retries(self, method: str, path: str, api_key: str, content: bytes | None,
                                 stream: bool, max_retries: int) -> _Answer:
        """One request with bounded, jittered retries on 429/5xx/connection errors, honouring
        Retry-After; never on ``insufficient_quota``."""
        attempt = 0
        headers = self._headers(api_key)
        while True:
            try:
                return await self._transport.exchange(method, path, headers, content, stream)
            except _Refused as refused:
                body = refused.body if isinstance(refused.body, dict) else {"error": refused.body}
                error = _upstream_error(refused.status, body if "error" in body else {"error": body},
                                        _retry_after(refused.headers), passed_through(refused.headers.items()))
                if refused.status not in _RETRYABLE or error.upstream_code == "insufficient_quota" \
                        or attempt >= max_retries:
                    error.attempts = attempt + 1
                    raise error from None
                reason, delay = str(refused.status), self._delay(attempt, error.retry_after)
            except _TimedOut as timed_out:
                late = UpstreamTimeout("upstream_timeout", upstream_status=504)
                late.sent, late.attempts = timed_out.sent, attempt + 1
                raise late from None
            except _BrokenAnswer:
                broken = UpstreamBadResponse("upstream_bad_response", upstream_status=502)
                broken.attempts = attempt + 1
                raise broken from None
            except _Unreachable as failed:
                if attempt >= max_retries:
                    unreachable = UpstreamError("upstream_unreachable", upstream_status=502)
                    unreachable.attempts, unreachable.connect_failed = attempt + 1, failed.connecting
                    raise unreachable from None
                reason, delay = "connection", self._delay(attempt, None)
            attempt += 1
            self._on_retry(reason)
            await asyncio.sleep(delay)

    async def complete(self, request: UpstreamRequest, api_key: str) -> UpstreamReply:
        started = time.perf_counter()
        slot = self.shares.acquire(request.client)
        try:
            response = await self._send("POST", _PATHS[request.api], api_key, self._body(request, False), False,
                                        request.client, request.retries)
        finally:
            self.shares.release(slot)
        waited = time.perf_counter() - started
        body = _json_object(response.content)
        try:
            text = responses_text(body) if request.api is UpstreamApi.RESPONSES else chat_text(body)
            if body.get("usage") is not None and not isinstance(body["usage"], dict):
                # Not an object: a shape no OpenAI API answers with (odd counts inside one are
                # normalised and flagged by usage_from instead).
                raise ValueError("usage is not an object")
            usage = usage_from(request.api, body.get("usage")) or TokenUsage(anomaly="usage_missing")
        except (AttributeError, TypeError, ValueError, IndexError):  # a shape no OpenAI API answers with
            raise UpstreamBadResponse("upstream_bad_response", upstream_status=502) from None
        return UpstreamReply(body, str(body.get("model") or request.model), text, usage, waited,
                             passed_through(response.headers.items()))

    async def stream(self, request: UpstreamRequest, api_key: str) -> AsyncIterator[StreamData | StreamDone]:
        slot = self.shares.acquire(request.client)  # held until the stream ends
        try:
            response = await self._send("POST", _PATHS[request.api], api_key, self._body(request, True), True,
                                        request.client, request.retries)
        except BaseException:
            self.shares.release(slot)
            raise
        headers: dict[str, str] | None = passed_through(response.headers.items())
        usage: TokenUsage | None = None
        model, response_id = request.model, None
        responses_api = request.api is UpstreamApi.RESPONSES
        try:
            lines: list[str] = []
            assert response.lines is not None
            async for line in response.lines:
                if line:
                    lines.append(line)
                    continue
                if not lines:
                    continue
                raw = ("\n".join(lines) + "\n\n").encode()
                data = next((ln[5:].lstrip() for ln in lines if ln.startswith("data:")), "")
                lines = []
                delta, usage_only, final = "", False, data == "[DONE]"
                if data and data != "[DONE]":
                    try:
                        event = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        event = {}
                    if not isinstance(event, dict):
                        event = {}  # relayed as it came; it counts for nothing
                    try:
                        if responses_api:
                            kind = event.get("type", "")
                            if kind == "response.output_text.delta":
                                delta = event.get("delta") or ""
                            elif kind in _FINAL_EVENTS:
                                final = True
                                done = event.get("response") or {}
                                usage = usage_from(request.api, done.get("usage")) or usage
                                model, response_id = done.get("model") or model, done.get("id") or response_id
                        else:
                            choices = event.get("choices") or []
                            if choices:
                                delta = (choices[0].get("delta") or {}).get("content") or ""
                            model = event.get("model") or model
                            response_id = event.get("id") or response_id
                            if event.get("usage"):
                                usage = usage_from(request.api, event["usage"])
                                usage_only = not choices
                    except (AttributeError, TypeError, IndexError, ValueError):
                        delta, usage_only = "", False  # an event of a shape no OpenAI API sends: relayed, not read
                    delta = delta if isinstance(delta, str) else ""
                    model = model if isinstance(model, str) else request.model
                    response_id = response_id if isinstance(response_id, str) else None
                yield StreamData(raw, delta, usage_only, final, headers)
                headers = None
            yield StreamDone(usage, model, response_id)
        finally:
            self.shares.release(slot)
            await response.close()

    async def get_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        response = await self._send("GET", f"/responses/{response_id}", api_key, None, False)
        return _json_object(response.content)

    async def cancel_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        response = await self._send("POST", f"/responses/{response_id}/cancel", api_key, b"{}", False)
        return _json_object(response.content)

    async def delete_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        response = await self._send("DELETE", f"/responses/{response_id}", api_key, None, False)
        return _json_object(response.content)

    async def response_input_items(self, response_id: str, api_key: str,
                                   query: Mapping[str, str]) -> dict[str, Any]:
        path = f"/responses/{response_id}/input_items"
        if query:
            path += "?" + str(httpx2.QueryParams(dict(query)))
        response = await self._send("GET", path, api_key, None, False)
        return _json_object(response.content)

    async def list_models(self, api_key: str) -> list[str]:
        response = await self._send("GET", "/models", api_key, None, False)
        data = _json_object(response.content).get("data") or []
        return [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _json_object(content: bytes) -> dict[str, Any]:
    """The upstream's JSON object; anything else (another JSON value, or not JSON) is an
    upstream error rather than a crash further on."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamBadResponse("upstream_bad_response", upstream_status=502)
    return body


async def _httpx_lines(response: httpx2.Response) -> AsyncIterator[str]:
    """The body's lines; a connection that breaks mid-body is the upstream's bad answer,
    not a crash of ours."""
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx2.HTTPError:
        raise UpstreamBadResponse("upstream_bad_response", upstream_status=502) from None
