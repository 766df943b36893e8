"""A fast stand-in for the OpenAI HTTP API, for benchmarks and black-box checks.

Serves, on loopback:
  POST /v1/chat/completions   (JSON, or SSE when "stream": true; usage chunk when
                               stream_options.include_usage is true)
  POST /v1/responses          (JSON, or SSE events when "stream": true)
  POST /v1/embeddings         (usage.prompt_tokens as below; deterministic 8-dim vectors, or
                               "dimensions"; "encoding_format": "base64" as OpenAI packs it)
  POST /v1/moderations        (never flagged)
  GET  /v1/models             FAKE_MODELS (comma list) or every name it answers for
  GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST .../cancel
  GET  /_fake/requests        the last 5000 requests seen (path, key, how it came, body)
  DELETE /_fake/requests      forget them
  PUT  /_fake/behaviour       misbehave until told otherwise (JSON, every field optional):
                              {"status": 503 or 429 (every chat/responses/models call answers
                               so), "retry_after": seconds (with status), "first_byte_delay_ms":
                               N (wait before the response starts; embeddings too), "cut_stream_after": N
                               (streams: drop the connection after N content chunks)}
  DELETE /_fake/behaviour     behave again

Azure mode (always on): POST /openai/deployments/{d}/chat/completions?api-version=V,
POST /openai/responses?api-version=V and GET /openai/models?api-version=V, like Azure
OpenAI: the key comes in the ``api-key`` header (missing: 401), ``api-version`` is required
(missing: 404, as Azure answers), and the reply's model is the deployment name.

Behaviour is deterministic so callers can assert on it:
  * a bearer key must start with "sk-" and must not contain "invalid", else 401 (whose message
    quotes the key masked as OpenAI's does: its first 7 and last 4 characters); a key
    containing "quota" gets 429 insufficient_quota (no Retry-After)
  * the reply text is "fake reply to: <first 40 chars of the last user text>"
  * prompt tokens = ceil(chars of all input text / 4); completion tokens =
    min(max tokens asked, 12); cached tokens = prompt tokens // 2 when the
    model name contains "cache"; reasoning tokens = 5 when it starts with "o"
  * model "fake-429" answers 429 with Retry-After: 1, "fake-500" answers 500,
    "fake-flaky" answers 500 on the first try of each distinct body and 200 on
    the next, "fake-slow" waits 30 s, "fake-stream-slow" streams 20 words 50 ms apart
  * misbehaving on purpose, when the request's text holds a marker: "fake:not-json" answers
    200 with an HTML page, "fake:array" a JSON array, "fake:bad-usage" a usage that is a
    string, "fake:drop" sends its headers then drops the connection before the body, and
    "fake:cut-json" sends a 200 and half of its JSON body, then drops the connection
  * like OpenAI, a Responses request with a ``previous_response_id`` it knows is billed the
    whole chain as input: that response's input and output tokens are added to the prompt's
  * like OpenAI, answers name the dated snapshot that served the request
    (gpt-4o-mini → gpt-4o-mini-2024-07-18, see SNAPSHOTS); other names are echoed
  * a last user text containing "fake:long-ids" gets a ~450-character response id and a
    150-character model name back (as some OpenAI-compatible proxies send);
    "fake:nul" a NUL byte in the reply and in the model name; "fake:negative-usage"
    negative token counts
  * GET /v1/responses/{id} and POST /v1/responses/{id}/cancel answer for ids this
    server created. "background": true answers as OpenAI does: status "queued" with
    "usage": null and no output; the first GET finds it "in_progress", the next one
    "completed" with its output and usage
  * every answer carries x-request-id (req_fake_<n>), openai-processing-ms and
    x-ratelimit-* headers, streams included
  * model "fake-400" answers 400 with OpenAI's error body (type, code, param, message)
  * function tools, as a model that must use one: when ``tool_choice`` is "required" or names
    a function, and the turn does not end with a tool result yet, the answer is a call of that
    function (else the first function tool) instead of text. Its arguments fill each property
    of the function's parameters from the last user text (strings), 1 (numbers), true
    (booleans), [] or {}; finish_reason "tool_calls" (chat) or a ``function_call`` output item
    (Responses), streamed as OpenAI streams them. A function whose name the last user text
    mentions is called too (tool_choice absent, "auto" or "required"): each one mentioned, in
    one turn, unless ``parallel_tool_calls`` is false (then the first). tool_choice "none", or
    no function mentioned and nothing required: tools are ignored (plain text).
  * structured output, as under OpenAI's structured outputs: ``response_format`` (chat) or
    ``text.format`` (Responses) of type "json_schema" makes the reply the JSON of a trivial
    instance of the schema (strings from the last user text, 1, true, the first enum value,
    one item per array, every property, $refs followed); "json_object" makes it
    {"reply": "<the usual reply>"}
Latency: FAKE_LATENCY_MS (default 0) before the first byte; FAKE_CHUNK_MS
(default 0) between stream chunks. ``--name N`` (or FAKE_NAME) names this instance: chat
completions carry ``system_fingerprint: fp_<N>`` and every answer an ``x-fake-upstream`` header,
so a caller can tell which of several fakes answered.

Run: python fake_openai.py --port 18000 [--name N]   (needs uvicorn, orjson)
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import itertools
import math
import os
import re
import struct
import time

import orjson

LATENCY = float(os.environ.get("FAKE_LATENCY_MS", "0")) / 1000
CHUNK = float(os.environ.get("FAKE_CHUNK_MS", "0")) / 1000
SEEN: collections.deque = collections.deque(maxlen=5000)
NAME = os.environ.get("FAKE_NAME", "")
BEHAVIOUR: dict = {}
FLAKY_SEEN: set[str] = set()
RESPONSES: collections.OrderedDict = collections.OrderedDict()  # id -> response (bounded below)
INPUT_ITEMS: dict[str, list] = {}  # response id -> its input items
REQUEST_IDS = itertools.count(1)
# What OpenAI names in its answers for a family alias (its current snapshot).
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06", "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14", "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31", "o4-mini": "o4-mini-2025-04-16", "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07", "gpt-5-nano": "gpt-5-nano-2025-08-07", "gpt-4": "gpt-4-0613",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
}
FINALS: dict[str, dict] = {}  # background response id -> its completed form
SERVED = [m.strip() for m in os.environ.get("FAKE_MODELS", "").split(",") if m.strip()] or sorted(
    {*SNAPSHOTS, *SNAPSHOTS.values(), "gpt-5-pro", "gpt-5.1", "o1", "o1-mini", "gpt-4-turbo", "fake-429", "fake-500",
     "fake-flaky", "fake-slow", "fake-stream-slow", "fake-400", "text-embedding-3-small", "text-embedding-3-large",
     "text-embedding-ada-002", "omni-moderation-latest"})


def _openai_headers() -> list:
    """What OpenAI sends with every answer: its request id, processing time, rate-limit state."""
    return [(b"x-request-id", b"req_fake_%d" % next(REQUEST_IDS)), (b"openai-processing-ms", b"7"),
            (b"x-ratelimit-limit-requests", b"10000"), (b"x-ratelimit-remaining-requests", b"9999"),
            (b"x-ratelimit-reset-requests", b"6ms")]


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict):
                parts.append(str(p.get("text") or p.get("content") or ""))
            else:
                parts.append(str(p))
        return " ".join(parts)
    return "" if content is None else str(content)


def _inputs(body: dict, responses_api: bool) -> tuple[str, str]:
    """Return (all input text, last user text)."""
    texts, last_user = [], ""
    if responses_api:
        if body.get("instructions"):
            texts.append(str(body["instructions"]))
        inp = body.get("input")
        items = [{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or [])
    else:
        items = body.get("messages") or []
    for m in items:
        if not isinstance(m, dict):
            continue
        t = _text_of(m.get("content"))
        texts.append(t)
        if m.get("role") == "user":
            last_user = t
    return " ".join(texts), last_user


def _tool_calls(body: dict, responses_api: bool, last_user: str) -> list[tuple[str, str]]:
    """(name, JSON arguments) of each function this turn calls; empty for a text answer.

    A function is called when the request requires one (``tool_choice`` "required": the first
    function; naming a function: that one) or when the last user text mentions its name (all
    of those mentioned, as parallel calls, unless ``parallel_tool_calls`` is false). Never
    once a tool result has come back: a caller that loops on tool calls (an agent) then gets
    its text answer on the next turn, as from a real model."""
    choice = body.get("tool_choice")
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if not tools or choice == "none":
        return []
    items = body.get("input") if responses_api else body.get("messages")
    last = items[-1] if isinstance(items, list) and items and isinstance(items[-1], dict) else {}
    if last.get("type") == "function_call_output" or last.get("role") == "tool":
        return []
    functions = [t if responses_api else t.get("function") or {} for t in tools]
    functions = [f for f in functions if isinstance(f, dict)]
    if isinstance(choice, dict):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
        chosen = [next((f for f in functions if f.get("name") == wanted), functions[0])] if functions else []
    else:
        mentioned = [f for f in functions if isinstance(f.get("name"), str) and f["name"] and re.search(
            rf"(?<![A-Za-z0-9_]){re.escape(f['name'])}(?![A-Za-z0-9_])", last_user)]
        if mentioned:
            chosen = mentioned if body.get("parallel_tool_calls") is not False else mentioned[:1]
        else:
            chosen = functions[:1] if choice == "required" else []
    filler = {"string": last_user[:40], "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    calls = []
    for function in chosen:
        params = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
        arguments = {name: filler.get(prop.get("type") if isinstance(prop, dict) else "string", last_user[:40])
                     for name, prop in (params.get("properties") or {}).items()}
        calls.append((str(function.get("name") or ""), orjson.dumps(arguments).decode()))
    return calls


def _nth(index: int) -> str:
    """The suffix of a turn's second, third … call id (the first keeps the plain id)."""
    return f"_{index}" if index else ""


def _structured_format(body: dict, responses_api: bool) -> dict | None:
    """The requested output format when it is structured (json_schema or json_object)."""
    if responses_api:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    else:
        fmt = body.get("response_format")
    return fmt if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object") else None


def _schema_instance(schema, root: dict, text: str, depth: int = 0):
    """A trivial instance of a JSON schema (what a model under structured outputs could
    answer): every property, strings from ``text``, 1, true, the first enum value, one item
    per array (more when minItems says so), the first non-null option of anyOf/oneOf."""
    if not isinstance(schema, dict) or depth > 40:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _schema_instance(target, root, text, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if not (isinstance(o, dict) and o.get("type") == "null")), options[0])
            return _schema_instance(chosen, root, text, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return {name: _schema_instance(prop, root, text, depth + 1)
                for name, prop in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = 0 if schema.get("maxItems") == 0 else max(1, int(schema.get("minItems") or 0))
        return [_schema_instance(schema.get("items") or {}, root, text, depth + 1) for _ in range(count)]
    return {"string": text, "integer": 1, "number": 1, "boolean": True, "null": None}.get(str(kind), text)


def _structured_reply(fmt: dict, responses_api: bool, reply: str, last_user: str) -> str:
    if fmt.get("type") == "json_object":
        return orjson.dumps({"reply": reply}).decode()
    spec = fmt if responses_api else fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    schema = schema if isinstance(schema, dict) else {}
    return orjson.dumps(_schema_instance(schema, schema, last_user[:40])).decode()


def _usage(body: dict, all_text: str) -> tuple[int, int, int, int]:
    model = str(body.get("model") or "")
    asked = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens") or 16
    try:
        asked = int(asked)
    except (TypeError, ValueError):
        asked = 16
    prompt = max(1, math.ceil(len(all_text) / 4))
    completion = max(1, min(asked, 12))
    cached = prompt // 2 if "cache" in model else 0
    reasoning = 5 if model.startswith("o") else 0
    return prompt, completion, cached, reasoning


def _error(status: int, message: str, etype: str, code: str | None = None) -> tuple[int, bytes, list]:
    body = orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})
    headers = [(b"content-type", b"application/json")]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    return status, body, headers


def _named(headers: list) -> list:
    return headers + [(b"x-fake-upstream", NAME.encode())] if NAME else headers


async def _send_json(send, status: int, body: bytes, headers=None):
    hs = headers or [(b"content-type", b"application/json")]
    hs = _named(hs + [(b"content-length", str(len(body)).encode())] + _openai_headers())
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


def _bearer(scope) -> str:
    for k, v in scope["headers"]:
        if k == b"authorization":
            v = v.decode("latin-1")
            return v[7:] if v.lower().startswith("bearer ") else v
    return ""


def _header(scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _azure(path: str, query: str) -> tuple[str | None, str | None, str | None]:
    """(the OpenAI path it stands for, the deployment, api-version) of an Azure-shaped path."""
    from urllib.parse import parse_qs

    version = (parse_qs(query).get("api-version") or [None])[0]
    parts = path.strip("/").split("/")
    if parts[:2] == ["openai", "deployments"] and len(parts) >= 4:
        return "/v1/" + "/".join(parts[3:]), parts[2], version
    if parts[:1] == ["openai"] and len(parts) >= 2:
        return "/v1/" + "/".join(parts[1:]), None, version
    return None, None, None


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"], scope["method"]
    raw = await _read_body(receive)
    if path == "/_fake/requests":
        if method == "DELETE":
            SEEN.clear()
            FLAKY_SEEN.clear()
            return await _send_json(send, 200, b"{}")
        return await _send_json(send, 200, orjson.dumps(list(SEEN)))
    if path == "/_fake/behaviour":
        if method == "DELETE":
            BEHAVIOUR.clear()
        elif method in ("PUT", "POST"):
            BEHAVIOUR.clear()
            BEHAVIOUR.update(orjson.loads(raw or b"{}"))
        return await _send_json(send, 200, orjson.dumps(BEHAVIOUR))
    azure_path, deployment, api_version = _azure(path, scope.get("query_string", b"").decode("latin-1"))
    if azure_path is not None:
        key, auth = _header(scope, b"api-key") or "", "api-key"
    else:
        key, auth = _bearer(scope), "bearer"
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {"_unparsed": raw[:200].decode("utf-8", "replace")}
    SEEN.append({"path": path, "method": method, "key": key, "auth": auth, "body": body, "t": time.time(),
                 "authorization": _header(scope, b"authorization"), "api_version": api_version,
                 "deployment": deployment})
    if azure_path is not None:
        if not key:
            return await _send_json(send, *_error(401, "Access denied due to invalid subscription key.",
                                                  "invalid_request_error", "401")[:2])
        if not api_version:
            return await _send_json(send, *_error(404, "Resource not found", "invalid_request_error", "404")[:2])
        path = azure_path
        if isinstance(body, dict) and deployment:
            body = {**body, "model": deployment}  # Azure answers with the deployment's model
    if BEHAVIOUR.get("first_byte_delay_ms") and (path.startswith(("/v1/chat/", "/v1/responses", "/v1/embeddings"))
                                                 or path == "/v1/models"):
        await asyncio.sleep(BEHAVIOUR["first_byte_delay_ms"] / 1000)
    if BEHAVIOUR and (path.startswith("/v1/chat/") or path.startswith("/v1/responses") or path == "/v1/models"):
        if BEHAVIOUR.get("status"):
            status = int(BEHAVIOUR["status"])
            headers = [(b"content-type", b"application/json")]
            if BEHAVIOUR.get("retry_after") is not None:
                headers.append((b"retry-after", str(BEHAVIOUR["retry_after"]).encode()))
            err = orjson.dumps({"error": {"message": f"fake {status}", "type": "server_error" if status >= 500
                                          else "requests", "param": None, "code": None}})
            return await _send_json(send, status, err, headers)
    if path.rstrip("/") == "/v1/models":
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in SERVED]
        return await _send_json(send, 200, orjson.dumps({"object": "list", "data": data}))
    if not path.startswith("/v1/responses/") and (
            path not in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/moderations")
            or method != "POST"):
        return await _send_json(send, *_error(404, f"no route {method} {path}", "invalid_request_error")[:2])
    # Azure keys are not OpenAI keys: there any non-empty key passes unless it says "invalid"
    if (azure_path is None and not key.startswith("sk-")) or "invalid" in key:
        # as OpenAI words it: the refused key is quoted, masked but for its start and its end
        masked = f"{key[:7]}{'*' * 20}{key[-4:]}" if len(key) > 11 else "*" * len(key)
        return await _send_json(send, *_error(401, f"Incorrect API key provided: {masked}. You can find your API "
                                                   "key at https://platform.openai.com/account/api-keys.",
                                              "invalid_request_error", "invalid_api_key"))
    if "quota" in key:
        body = orjson.dumps({"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                                       "param": None, "code": "insufficient_quota"}})
        return await _send_json(send, 429, body)
    if path.startswith("/v1/responses/"):
        rid, _, action = path[len("/v1/responses/"):].partition("/")
        stored = RESPONSES.get(rid)
        if stored is None:
            return await _send_json(send, *_error(404, f"No response found with id '{rid}'.", "invalid_request_error")[:2])
        if action == "cancel" and method == "POST":
            stored["status"] = "cancelled"
        elif not action and method == "DELETE":
            RESPONSES.pop(rid, None)
            return await _send_json(send, 200, orjson.dumps({"id": rid, "object": "response", "deleted": True}))
        elif action == "input_items" and method == "GET":
            items = INPUT_ITEMS.get(rid, [])
            return await _send_json(send, 200, orjson.dumps({
                "object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None, "has_more": False}))
        elif action or method != "GET":
            return await _send_json(send, *_error(404, f"no route {method} {path}", "invalid_request_error")[:2])
        elif stored["status"] == "queued":
            stored["status"] = "in_progress"  # the background work has started
        elif stored["status"] == "in_progress" and rid in FINALS:
            stored = RESPONSES[rid] = FINALS.pop(rid)  # ... and is done by the next look
        return await _send_json(send, 200, orjson.dumps(stored))
    if not isinstance(body, dict) or "_unparsed" in body:
        return await _send_json(send, *_error(400, "could not parse JSON body", "invalid_request_error"))

    model = str(body.get("model") or "")
    if model == "fake-429":
        return await _send_json(send, *_error(429, "Rate limit reached.", "requests", "rate_limit_exceeded"))
    if model == "fake-400":
        body = orjson.dumps({"error": {"message": "Invalid value for 'temperature': the fake refuses this request.",
                                       "type": "invalid_request_error", "param": "temperature",
                                       "code": "invalid_value"}})
        return await _send_json(send, 400, body)
    if model == "fake-500":
        return await _send_json(send, *_error(500, "The server had an error.", "server_error"))
    if model == "fake-flaky":
        digest = hashlib.sha1(raw).hexdigest()
        if digest not in FLAKY_SEEN:
            FLAKY_SEEN.add(digest)
            return await _send_json(send, *_error(500, "The server had an error.", "server_error"))
    if b"fake:not-json" in raw:
        return await _send_json(send, 200, b"<html><body>502 Bad Gateway</body></html>",
                                [(b"content-type", b"text/html")])
    if b"fake:array" in raw:
        return await _send_json(send, 200, b"[1, 2, 3]")
    if b"fake:cut-json" in raw:  # a 200 whose JSON body stops halfway: the upstream has billed it
        whole = orjson.dumps({"id": "chatcmpl-cut", "object": "chat.completion", "choices": [], "usage": {
            "prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}, "padding": "x" * 200})
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(whole)).encode())]})
        await send({"type": "http.response.body", "body": whole[:len(whole) // 2], "more_body": True})
        raise ConnectionAbortedError("fake-cut-json: the connection goes away mid-body")
    if b"fake:drop" in raw:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream" if body.get("stream") else b"application/json")]})
        raise ConnectionAbortedError("fake-drop: the connection goes away before the body")
    if model == "fake-slow":
        await asyncio.sleep(30)
    cut_after = BEHAVIOUR.get("cut_stream_after")
    if LATENCY:
        await asyncio.sleep(LATENCY)

    if path in ("/v1/embeddings", "/v1/moderations"):
        return await _send_json(send, 200, orjson.dumps(_embeddings(body) if path == "/v1/embeddings"
                                                        else _moderations(body)))
    responses_api = path == "/v1/responses"
    all_text, last_user = _inputs(body, responses_api)
    prompt, completion, cached, reasoning = _usage(body, all_text)
    reply = "fake reply to: " + last_user[:40]
    structured = _structured_format(body, responses_api)
    if structured:
        reply = _structured_reply(structured, responses_api, reply, last_user)
    words = reply.split(" ")  # joined again with " " when streamed: the same text
    tool_calls = _tool_calls(body, responses_api, last_user)
    chunk_delay = CHUNK
    if model == "fake-stream-slow":
        words = [f"w{i}" for i in range(20)]
        reply = " ".join(words)
        chunk_delay = 0.05
    created = int(time.time())
    rid = "resp_" + hashlib.sha1(raw).hexdigest()[:24]
    served = SNAPSHOTS.get(model, model)
    if "fake:long-ids" in last_user:
        rid = "resp_" + hashlib.sha256(raw).hexdigest() * 7
        served = (served + "-" + "x" * 150)[:150]
    if "fake:nul" in last_user:
        reply, words, served = "널\x00바이트", ["널\x00바이트"], served + "\x00"
    if "fake:negative-usage" in last_user:
        prompt, completion = -5, -7
    previous = body.get("previous_response_id")
    chained = RESPONSES.get(previous) if responses_api and isinstance(previous, str) else None
    if chained is not None and isinstance(chained.get("usage"), dict):
        prompt += chained["usage"]["input_tokens"] + chained["usage"]["output_tokens"]

    if responses_api:
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
                 "total_tokens": prompt + completion}
        response = {"id": rid, "object": "response", "created_at": created, "status": "completed",
                    "model": served, "output": [{"type": "message", "id": "msg_" + rid[5:], "status": "completed",
                                                "role": "assistant",
                                                "content": [{"type": "output_text", "text": reply, "annotations": []}]}],
                    "usage": "lots" if b"fake:bad-usage" in raw else usage,
                    "text": {"format": structured or {"type": "text"}},
                    "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
                    "temperature": body.get("temperature"), "parallel_tool_calls": True, "tool_choice": "auto",
                    "tools": body.get("tools") or [], "top_p": 1.0, "error": None, "incomplete_details": None,
                    "metadata": {}}
        if tool_calls:
            response["output"] = [{"type": "function_call", "id": f"fc_{rid[5:]}{_nth(i)}",
                                   "call_id": f"call_{rid[5:]}{_nth(i)}", "name": name, "arguments": arguments,
                                   "status": "completed"} for i, (name, arguments) in enumerate(tool_calls)]
        RESPONSES[rid] = response
        inp = body.get("input")
        INPUT_ITEMS[rid] = [  # as OpenAI lists them: text content becomes an input_text part
            {"id": f"msg_in_{rid[5:]}_{i}", "type": "message", "status": "completed", **item,
             **({"content": [{"type": "input_text", "text": item["content"]}]}
                if isinstance(item.get("content"), str) else {})}
            for i, item in enumerate([{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or []))
            if isinstance(item, dict)]
        while len(RESPONSES) > 1000:
            INPUT_ITEMS.pop(RESPONSES.popitem(last=False)[0], None)
        if body.get("background"):
            FINALS[rid] = response
            while len(FINALS) > 1000:
                FINALS.pop(next(iter(FINALS)))
            response = {**response, "status": "queued", "output": [], "usage": None}
            RESPONSES[rid] = response
        if not body.get("stream"):
            return await _send_json(send, 200, orjson.dumps(response))
        await send({"type": "http.response.start", "status": 200,
                    "headers": _named([(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                       *_openai_headers()])})
        seq = 0

        async def event(name: str, data: dict):
            nonlocal seq
            data = {"type": name, "sequence_number": seq, **data}
            seq += 1
            await send({"type": "http.response.body", "more_body": True,
                        "body": b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"})

        shell = {**response, "status": "in_progress", "output": [], "usage": None}
        item_id = "msg_" + rid[5:]
        await event("response.created", {"response": shell})
        if tool_calls:
            for index, item in enumerate(response["output"]):
                await event("response.output_item.added", {"output_index": index,
                                                           "item": {**item, "arguments": "", "status": "in_progress"}})
                await event("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index,
                                                                        "delta": item["arguments"]})
                await event("response.function_call_arguments.done", {
                    "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": item["arguments"]})
                await event("response.output_item.done", {"output_index": index, "item": item})
            await event("response.completed", {"response": response})
            return await send({"type": "http.response.body", "body": b""})
        await event("response.output_item.added", {"output_index": 0, "item": {
            "type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}})
        await event("response.content_part.added", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                    "part": {"type": "output_text", "text": "", "annotations": []}})
        for i, w in enumerate(words):
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
            if cut_after is not None and i >= cut_after:
                raise ConnectionAbortedError("fake: stream cut on purpose")
            await event("response.output_text.delta", {"item_id": "msg_" + rid[5:], "output_index": 0,
                                                       "content_index": 0, "delta": w if i == 0 else " " + w,
                                                       "logprobs": []})
        part = {"type": "output_text", "text": reply, "annotations": []}
        await event("response.output_text.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                   "text": reply, "logprobs": []})
        await event("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                   "part": part})
        await event("response.output_item.done", {"output_index": 0, "item": response["output"][0]})
        await event("response.completed", {"response": response})
        return await send({"type": "http.response.body", "body": b""})

    # OpenAI generates and bills every one of n choices.
    n = body.get("n") if isinstance(body.get("n"), int) and not isinstance(body.get("n"), bool) else 1
    completion *= max(1, n)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached},
             "completion_tokens_details": {"reasoning_tokens": reasoning}}
    cid = "chatcmpl-" + rid[5:]
    calls = [{"id": f"call_{rid[5:]}{_nth(i)}", "type": "function", "function": {"name": name, "arguments": arguments}}
             for i, (name, arguments) in enumerate(tool_calls)]
    message = {"role": "assistant", "content": None, "tool_calls": calls} if calls else {
        "role": "assistant", "content": reply}
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        out = {"id": cid, "object": "chat.completion", "created": created, "model": served,
               "choices": [{"index": i, "message": message,
                            "finish_reason": finish, "logprobs": None} for i in range(max(1, n))],
               "usage": "lots" if b"fake:bad-usage" in raw else usage,
               "system_fingerprint": "fp_" + (NAME or "fake")}
        return await _send_json(send, 200, orjson.dumps(out))
    await send({"type": "http.response.start", "status": 200,
                "headers": _named([(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                   *_openai_headers()])})

    def chunk(delta: dict, finish=None, with_usage=None) -> bytes:
        c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served,
             "choices": [] if with_usage else [{"index": 0, "delta": delta, "finish_reason": finish,
                                                "logprobs": None}]}
        if with_usage:
            c["usage"] = with_usage
        return b"data: " + orjson.dumps(c) + b"\n\n"

    if calls:  # as OpenAI streams calls: for each, its id and name first, then its arguments
        words = []
        for index, call in enumerate(calls):
            first = {**call, "index": index, "function": {"name": call["function"]["name"], "arguments": ""}}
            delta = {"role": "assistant", "content": None, "tool_calls": [first]} if index == 0 else {
                "tool_calls": [first]}
            await send({"type": "http.response.body", "more_body": True, "body": chunk(delta)})
            await send({"type": "http.response.body", "more_body": True, "body": chunk(
                {"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]})})
    else:
        await send({"type": "http.response.body", "more_body": True,
                    "body": chunk({"role": "assistant", "content": ""})})
    for i, w in enumerate(words):
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
        if cut_after is not None and i >= cut_after:
            raise ConnectionAbortedError("fake: stream cut on purpose")
        await send({"type": "http.response.body", "more_body": True,
                    "body": chunk({"content": w if i == 0 else " " + w})})
    await send({"type": "http.response.body", "more_body": True, "body": chunk({}, finish=finish)})
    if (body.get("stream_options") or {}).get("include_usage"):
        await send({"type": "http.response.body", "more_body": True, "body": chunk({}, with_usage=usage)})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _embeddings(body: dict) -> dict:
    """One deterministic vector per input (from a hash of it); token arrays count as given."""
    inp = body.get("input")
    items = [inp] if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)) else inp
    dims = body.get("dimensions") or 8
    data, tokens = [], 0
    for i, item in enumerate(items or []):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += max(1, math.ceil(len(item) / 4)) if isinstance(item, str) else len(item)
        seed = hashlib.sha256(text.encode()).digest()
        vector = [(seed[j % 32] - 128) / 128 for j in range(dims)]
        encoded = (base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                   if body.get("encoding_format") == "base64" else vector)
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {"object": "list", "data": data, "model": str(body.get("model")),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _moderations(body: dict) -> dict:
    inp = body.get("input")
    count = len(inp) if isinstance(inp, list) and inp and isinstance(inp[0], str) else 1
    categories = ("harassment", "hate", "self-harm", "sexual", "violence")
    result = {"flagged": False, "categories": dict.fromkeys(categories, False),
              "category_scores": dict.fromkeys(categories, 0.0001), "category_applied_input_types": {}}
    return {"id": "modr-" + hashlib.sha1(orjson.dumps(inp)).hexdigest()[:20], "model": str(body.get("model")),
            "results": [result] * count}


if __name__ == "__main__":
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument("--name", default=NAME)
    a = ap.parse_args()
    NAME = a.name
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False,
                http="httptools", loop="uvloop")
