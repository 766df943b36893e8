"""The request-log middleware (offered to the gateway; see chat_api.request_logging) over a
real HTTP server: one entry per request with the status the client got — refusals, errors
raised, streams logged when they end, what the pipeline annotated — and nothing for other
routes."""
from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chat_api.request_logging import STATE_KEY, RequestLogMiddleware
from domain.adapters.fakes import InMemoryRequestLog
from domain.money import Money
from tests.support.processes import free_port


def _app(sink: InMemoryRequestLog) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:  # as chat_api's app does
        return JSONResponse({"error": {"message": "x", "type": "api_error", "param": None, "code": "internal_error"}},
                            status_code=500)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("refuse"):
            return JSONResponse({"error": {"message": "no", "type": "x", "param": None, "code": "budget_exceeded"}},
                                status_code=402)
        if body.get("boom"):
            raise RuntimeError("boom")
        request.state.request_log = {"request_id": "chatcmpl-1", "client_key_id": "k1", "model": "gpt-4o-mini",
                                     "key_source": "server", "fallback_reason": "user_key_rejected",
                                     "upstream": "default", "cost": Money(1234)}
        return JSONResponse({"ok": True}, headers={"x-request-id": "upstream-id"})

    @app.post("/api/v1/chat/stream")
    async def stream(request: Request) -> StreamingResponse:
        request.state.request_log = {"model": "gpt-4o-mini"}

        async def events() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"data: {i}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-request-id": "s-1"})

    @app.post("/admin/v1/keys")
    async def admin() -> dict:
        return {}

    app.add_middleware(RequestLogMiddleware, request_log=lambda: sink, now=lambda: datetime.now(UTC))
    assert STATE_KEY == "request_log"
    return app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, InMemoryRequestLog]]:
    sink = InMemoryRequestLog()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(sink), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", sink
    server.should_exit = True
    thread.join(10)


def test_each_request_is_logged_once_with_what_the_client_got(served: tuple[str, InMemoryRequestLog]) -> None:
    url, sink = served
    sink.entries.clear()
    with httpx.Client(base_url=url) as client:
        assert client.post("/v1/chat/completions", json={}).status_code == 200
        assert client.post("/v1/chat/completions", json={"refuse": True}).status_code == 402
        # (uvicorn closes the connection after an unhandled error: ask on a connection of its own)
        assert httpx.post(url + "/v1/chat/completions", json={"boom": True}).status_code == 500
        with client.stream("POST", "/api/v1/chat/stream", json={}) as r:
            assert b"[DONE]" in r.read()
        assert client.post("/admin/v1/keys", json={}).status_code == 200  # not a chat route
        assert client.get("/v1/chat/completions").status_code == 405  # only POSTs are requests
    statuses = [e.status for e in sink.entries]
    assert statuses == [200, 402, 500, 200]
    ok, refused, boom, streamed = sink.entries
    assert (ok.request_id, ok.client_key_id, ok.model, ok.key_source, ok.fallback_reason, ok.upstream, ok.cost) == (
        "chatcmpl-1", "k1", "gpt-4o-mini", "server", "user_key_rejected", "default", Money(1234))
    assert refused.error_code == "budget_exceeded" and refused.route == "/v1/chat/completions"
    assert boom.status == 500 and boom.request_id  # a fresh id when none was answered
    assert boom.error_code == "internal_error"
    assert streamed.route == "/api/v1/chat/stream" and streamed.request_id == "s-1" and streamed.model == "gpt-4o-mini"
    assert sink.counts() == (4, 2)
