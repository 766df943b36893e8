"""The last-resort handler: a failure nobody planned for is answered in the dialect's own error
shape, with no detail, and logged in one line (no traceback per request).

The app runs in-process with one port replaced (``bootstrap(..., provider=...)``) by an
upstream whose client code is broken; everything else (Postgres, keys, ledger) is real.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chat_api.app import make_app
from chat_api.bootstrap import bootstrap
from chat_api.settings import ChatApiSettings
from domain.ports import StreamData, StreamDone, UpstreamReply, UpstreamRequest

SECRET_DETAIL = "dict object has no attribute 'choices' (sk-server-very-secret)"


class BrokenProvider:
    """An upstream client with a bug: every call raises something that is not a domain error."""

    async def complete(self, request: UpstreamRequest, api_key: str) -> UpstreamReply:
        raise AttributeError(SECRET_DETAIL)

    async def stream(self, request: UpstreamRequest, api_key: str) -> AsyncIterator[StreamData | StreamDone]:
        yield StreamData(b'data: {"choices": []}\n\n', "partial ")
        raise KeyError(SECRET_DETAIL)

    async def get_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        raise AttributeError(SECRET_DETAIL)

    async def cancel_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        raise AttributeError(SECRET_DETAIL)

    async def delete_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        raise AttributeError(SECRET_DETAIL)

    async def response_input_items(self, response_id: str, api_key: str, query: Mapping[str, str]) -> dict[str, Any]:
        raise AttributeError(SECRET_DETAIL)

    async def list_models(self, api_key: str) -> list[str]:
        raise AttributeError(SECRET_DETAIL)

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def client(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ChatApiSettings(database_url=pg_url, openai_api_key="sk-server-very-secret",
                               admin_token="admin-" + "b" * 40, key_hash_secret="k" * 40, allow_anonymous=True,
                               data_dir=tmp_path_factory.mktemp("last-resort"))
    container = bootstrap(settings, provider=BrokenProvider())
    with TestClient(make_app(settings, container), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("path", "body", "code_of"), [
    ("/api/v1/chat", {"user_prompt": "x"}, lambda b: b["code"]),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
     lambda b: b["error"]["code"]),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "x"}, lambda b: b["error"]["code"]),
], ids=["original", "chat.completions", "responses"])
def test_an_unexpected_error_is_a_500_in_the_dialects_shape_and_one_log_line(client, caplog, path, body, code_of):
    caplog.set_level(logging.DEBUG)
    r = client.post(path, json=body, headers={"Accept-Language": "en"})
    assert r.status_code == 500
    assert code_of(r.json()) == "internal_error"
    assert "choices" not in r.text and "secret" not in r.text
    if path.startswith("/api/"):
        assert r.json()["success"] is False and r.json()["error"].endswith("A system error occurred.")
    lines = [rec for rec in caplog.records if rec.name == "chat_api.gateway"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "AttributeError" in lines[0].getMessage() and path in lines[0].getMessage()
    assert "secret" not in lines[0].getMessage(), "the message may quote anything: only the type and place"


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/chat/stream", {"user_prompt": "x"}),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]}),
], ids=["original", "chat.completions"])
def test_an_unexpected_error_mid_stream_ends_it_with_an_error_event(client, caplog, path, body):
    caplog.set_level(logging.DEBUG)
    r = client.post(path, json=body)
    assert r.status_code == 200  # sent with the first event
    assert "internal_error" in r.text and "choices\": []" not in r.text.split("internal_error")[-1]
    assert "secret" not in r.text
    lines = [rec for rec in caplog.records if rec.name == "chat_api.gateway"]
    assert len(lines) == 1 and "KeyError" in lines[0].getMessage()


def test_an_unexpected_error_outside_the_pipeline_never_reaches_the_server(pg_url, tmp_path, caplog):
    """An admin or ops route that fails unexpectedly: a 500 in the OpenAI error shape and one
    log line. Nothing is raised to the server: uvicorn would log the whole traceback, with
    whatever the failed call held (statement parameters, a key's name and hash)."""
    settings = ChatApiSettings(database_url=pg_url, openai_api_key="sk-server-very-secret",
                               admin_token="admin-" + "b" * 40, key_hash_secret="k" * 40, data_dir=tmp_path)
    container = bootstrap(settings, provider=BrokenProvider())

    def broken() -> list[Any]:
        raise AttributeError(SECRET_DETAIL)

    container.upstream_status = broken  # type: ignore[method-assign]  # a bug nobody planned for
    caplog.set_level(logging.DEBUG)
    with TestClient(make_app(settings, container)) as c:  # raises whatever the app raises to the server
        r = c.get("/admin/v1/upstreams", headers={"Authorization": "Bearer admin-" + "b" * 40})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text
    lines = [rec for rec in caplog.records if rec.name == "chat_api" and "failed" in rec.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "AttributeError" in lines[0].getMessage()


def test_an_error_escaping_the_pipeline_on_a_v1_route_is_a_500_with_a_request_id(client, caplog):
    """The chat routes are served before Starlette's middleware (``GatewayApp``), so the request
    id the middleware would add must come with the last-resort answer too (every /v1 answer
    carries one). The gateway itself is swapped for one that fails outside its own guard."""
    caplog.set_level(logging.DEBUG)

    class ExplodingGateway:
        async def serve(self, *args: object) -> None:
            raise RuntimeError(SECRET_DETAIL)

    app = client.app
    gateway, app.state.gateway = app.state.gateway, ExplodingGateway()
    try:
        r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        original = client.post("/api/v1/chat", json={"user_prompt": "x"})
    finally:
        app.state.gateway = gateway
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error" and "secret" not in r.text
    assert len(r.headers["x-request-id"]) >= 16
    assert original.status_code == 500 and "x-request-id" not in original.headers  # /v1 only, as the contract says
