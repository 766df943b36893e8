"""The public surface, through the nginx router only (the seed README's examples first)."""
from __future__ import annotations

import json
import socket
import statistics
import time
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.e2e

README_CHAT = {
    "request_id": "unique_session_id",
    "user_prompt": "Python의 특징을 설명해주세요.",
    "system_prompt": "당신은 친절한 프로그래밍 튜터입니다.",
    "max_tokens": 1000,
    "temperature": 0.7,
    "model": "gpt-4o-mini",
}
ORIGINAL_KEYS = {"id", "request_id", "object", "created_at", "status", "model", "output_text", "input_tokens",
                 "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "text_format_type", "cost",
                 "response_time", "success", "error", "use_user_api_key"}


def raw_request(base_url: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are (no client-side normalisation) and read until the server closes."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


# --- the seed README ----------------------------------------------------------------

def test_readme_curl_root(stack):
    r = httpx.get(f"{stack.base_url}/api/v1/", headers=stack.auth())
    assert r.status_code == 200
    assert r.json() == {"message": "LLM Server API", "status": "running"}
    # the router's own headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "referrer-policy" in r.headers
    assert r.headers.get("server", "nginx") == "nginx", "server_tokens off: no version"


def test_readme_python_chat(stack):
    r = httpx.post(f"{stack.base_url}/api/v1/chat", json=README_CHAT, headers=stack.auth(), timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert ORIGINAL_KEYS <= set(body), ORIGINAL_KEYS - set(body)
    assert isinstance(body["output_text"], str) and body["output_text"].startswith("fake reply to:")
    assert isinstance(body["cost"], int)
    assert body["success"] is True and body["request_id"] == "unique_session_id"


# --- the OpenAI dialect with the official SDK ---------------------------------------------

def test_openai_sdk_chat_completion(stack):
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client_key, max_retries=0, timeout=60)
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "안녕하세요, SDK non-stream"}], max_tokens=50)
    assert completion.choices[0].message.content.startswith("fake reply to:")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_openai_sdk_stream_arrives_incrementally(stack):
    """20 chunks 50 ms apart upstream must reach the client spread out, not buffered."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client_key, max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="fake-stream-slow", messages=[{"role": "user", "content": "stream please"}], stream=True)
    arrivals, text = [], []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
            text.append(chunk.choices[0].delta.content)
    assert len(arrivals) >= 15, f"only {len(arrivals)} content chunks: {''.join(text)!r}"
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert statistics.median(gaps) >= 0.030, f"chunks arrived together (median gap {statistics.median(gaps):.3f}s)"
    assert arrivals[-1] - arrivals[0] >= 0.5


def test_original_dialect_stream_arrives_incrementally(stack):
    body = {"user_prompt": "stream please", "model": "fake-stream-slow", "max_tokens": 100}
    arrivals = []
    with httpx.stream("POST", f"{stack.base_url}/api/v1/chat/stream", json=body, headers=stack.auth(),
                      timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            if chunk.strip():
                arrivals.append(time.perf_counter())
    # group reads closer than 20 ms: 20 words 50 ms apart give ~20 separate bursts
    bursts = 1 + sum(1 for a, b in zip(arrivals, arrivals[1:]) if b - a >= 0.020)
    assert bursts >= 10, f"the stream arrived in {bursts} bursts: nginx is buffering it"


# --- the other services behind the router ------------------------------------------------

def test_system_status_via_nginx_reaches_the_monitor(stack):
    r = httpx.get(f"{stack.base_url}/api/v1/system/status", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "healthy"
    assert {"timestamp", "cpu_usage", "memory_usage"} <= set(body)


def test_docs_and_openapi(stack):
    r = httpx.get(f"{stack.base_url}/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    spec = httpx.get(f"{stack.base_url}/openapi.json").json()
    assert "/api/v1/chat" in spec["paths"] and "/v1/chat/completions" in spec["paths"]


def test_console_page(stack):
    if stack.admin_ui_url is None:
        pytest.skip("admin-ui is not installed")
    r = httpx.get(f"{stack.base_url}/admin/", timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert httpx.get(f"{stack.base_url}/admin").status_code == 301


def test_console_websocket_upgrades_through_nginx(stack):
    if stack.admin_ui_url is None:
        pytest.skip("admin-ui is not installed")
    from websockets.sync.client import connect

    ws_url = stack.base_url.replace("http://", "ws://") + "/admin/_stcore/stream"
    with connect(ws_url, origin=stack.base_url, subprotocols=["streamlit"], open_timeout=20) as ws:
        assert ws.response.status_code == 101


# --- what the router refuses ----------------------------------------------------------------

def test_internal_routes_are_refused_from_outside(stack):
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    assert httpx.get(f"{stack.base_url}/metrics").status_code in (403, 404)
    assert httpx.get(f"{stack.base_url}/admin/v1/keys", headers=admin).status_code in (403, 404)
    # ... while the services answer them directly
    direct = stack.chat_api_urls[0]
    m = httpx.get(f"{direct}/metrics")
    assert m.status_code == 200 and "# HELP" in m.text
    assert httpx.get(f"{direct}/admin/v1/keys", headers=admin).status_code == 200


@pytest.mark.parametrize("path", ["/api/../metrics", "/api/%2e%2e/metrics", "/v1/..%2f..%2fmetrics",
                                  "//metrics", "/api/v1/system/../../../metrics", "/admin/v1/../v1/keys"])
def test_path_tricks_do_not_reach_internal_routes(stack, path):
    host = urlsplit(stack.base_url).netloc
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {stack.admin_token}\r\n" \
          f"Connection: close\r\n\r\n".encode()
    answer = raw_request(stack.base_url, req)
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 200 " not in status_line, f"{path} -> {status_line!r}"
    assert b"# HELP" not in answer and b"short_id" not in answer


def test_bodies_over_one_megabyte_get_413(stack):
    big = json.dumps({"user_prompt": "x" * (2 * 1024 * 1024)})
    r = httpx.post(f"{stack.base_url}/api/v1/chat", content=big, timeout=30,
                   headers={**stack.auth(), "Content-Type": "application/json"})
    assert r.status_code == 413


def test_unknown_host_is_not_proxied(stack):
    req = b"GET /api/v1/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    answer = raw_request(stack.base_url, req)
    # 444: nginx closes the connection without a response; 421 would also do.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 421"), answer[:200]
    assert b"LLM Server API" not in answer
