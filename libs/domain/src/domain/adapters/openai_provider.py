"""The upstream on the official ``openai`` async client.

The SDK's own retries are off (``max_retries=0``): retries live here, in one place, so they
can skip ``insufficient_quota``, stop at the first streamed byte, and be counted. Bodies go
out as pre-serialised JSON and come back as raw HTTP responses, so what the client gets is
what OpenAI sent, and no per-request pydantic models are built.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx2
import openai
import orjson

from domain.errors import UpstreamBadResponse, UpstreamError, UpstreamTimeout
from domain.ports import StreamData, StreamDone, UpstreamApi, UpstreamReply, UpstreamRequest, passed_through
from domain.upstream_guard import CircuitBreaker, UpstreamShares
from domain.usage import TokenUsage

_PATHS = {UpstreamApi.RESPONSES: "/responses", UpstreamApi.CHAT_COMPLETIONS: "/chat/completions",
          UpstreamApi.EMBEDDINGS: "/embeddings", UpstreamApi.MODERATIONS: "/moderations"}
_ITEMS = {UpstreamApi.RESPONSES: "input", UpstreamApi.CHAT_COMPLETIONS: "messages"}
_FINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}
_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


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


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAiLlmProvider:
    def __init__(self, *, api_base: str, timeout: float = 60.0, connect_timeout: float = 5.0,
                 max_retries: int = 2, backoff_base: float = 0.25, max_backoff: float = 8.0,
                 max_connections: int = 200, client_share: float = 0.25, breaker_threshold: int = 5,
                 breaker_cooldown: float = 30.0, breaker_min_clients: int = 2,
                 on_retry: Callable[[str], None] | None = None,
                 on_circuit_open: Callable[[str], None] | None = None,
                 client: openai.AsyncOpenAI | None = None) -> None:
        # A prebuilt client (an Azure deployment's) keeps the SDK's own URL and auth rules.
        self._client = client or openai.AsyncOpenAI(
            api_key="unused-placeholder",  # every request sends its own key (see _headers)
            base_url=api_base, max_retries=0,
            timeout=httpx2.Timeout(timeout, connect=connect_timeout),
            http_client=openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)))
        self._max_retries, self._backoff_base, self._max_backoff = max_retries, backoff_base, max_backoff
        self._on_retry = on_retry or (lambda reason: None)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, min_clients=breaker_min_clients,
                                      on_open=on_circuit_open)
        self.shares = UpstreamShares(max_connections, client_share)

    async def aclose(self) -> None:
        await self._client.close()

    @staticmethod
    def _headers(api_key: str) -> openai.RequestOptions:
        return {"headers": {"Authorization": f"Bearer {api_key}"}}

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
                    client: str | None = None, retries: bool = True) -> httpx2.Response:
        """One exchange under the circuit breaker (see ``CircuitBreaker`` for what counts)."""
        admission = self.breaker.admit(api_key, client)
        verdict: bool | None = None
        try:
            response = await self._send_with_retries(method, path, api_key, content, stream,
                                                     self._max_retries if retries else 0)
            verdict = True
            return response
        except UpstreamError as error:
            verdict = (error.upstream_status or 500) < 500
            raise
        finally:  # a cancelled call settles with no verdict, freeing a half-open probe
            self.breaker.record(admission, verdict)

    async def _send_with_retries(self, method: str, path: str, api_key: str, content: bytes | None,
                                 stream: bool, max_retries: int) -> httpx2.Response:
        """One request with bounded, jittered retries on 429/5xx/connection errors, honouring
        Retry-After; never on ``insufficient_quota``."""
        attempt = 0
        while True:
            try:
                if method == "GET":
                    return await self._client.get(path, cast_to=httpx2.Response, options=self._headers(api_key))
                if method == "DELETE":
                    return await self._client.delete(path, cast_to=httpx2.Response, options=self._headers(api_key))
                return await self._client.post(path, cast_to=httpx2.Response, content=content,
                                               options=self._headers(api_key),
                                               stream=stream)
            except openai.APIStatusError as exc:
                body = exc.body if isinstance(exc.body, dict) else {"error": exc.body}
                error = _upstream_error(exc.status_code, body if "error" in body else {"error": body},
                                        _retry_after(exc.response), passed_through(exc.response.headers.items()))
                if exc.status_code not in _RETRYABLE or error.upstream_code == "insufficient_quota" \
                        or attempt >= max_retries:
                    error.attempts = attempt + 1
                    raise error from None
                reason, delay = str(exc.status_code), self._delay(attempt, error.retry_after)
            except openai.APITimeoutError:
                raise UpstreamTimeout("upstream_timeout", upstream_status=504) from None
            except openai.APIConnectionError:
                if attempt >= max_retries:
                    unreachable = UpstreamError("upstream_unreachable", upstream_status=502)
                    unreachable.attempts = attempt + 1
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
            async for line in _lines(response):
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
            await response.aclose()

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


async def _lines(response: httpx2.Response) -> AsyncIterator[str]:
    """The body's lines; a connection that breaks mid-body is the upstream's bad answer,
    not a crash of ours."""
    try:
        async for line in response.aiter_lines():
            yield line
    except httpx2.HTTPError:
        raise UpstreamBadResponse("upstream_bad_response", upstream_status=502) from None
