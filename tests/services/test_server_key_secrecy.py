"""The server's OpenAI key is the operator's: when the upstream refuses it, no client learns
any of it (OpenAI's 401 quotes the refused key, masked but for its first 7 and last 4
characters) and no client is told that its own credentials failed (a 401 would make the SDK
raise AuthenticationError about the client's key). A real chat-api process whose server key
the fake upstream refuses."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import stop

REFUSED_SERVER_KEY = "sk-invalid-server-key-0123456789wxyz"
FRAGMENTS = (REFUSED_SERVER_KEY[:7], REFUSED_SERVER_KEY[-4:])


@pytest.fixture(scope="module")
def refused(pg_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    proc, api = start_chat_api(pg_url, fake_openai, tmp_path_factory.mktemp("refused-server-key"),
                               OPENAI_API_KEY=REFUSED_SERVER_KEY, RATE_LIMIT_PER_MINUTE="0")
    yield api
    stop(proc)


CALLS = {
    "chat.completions": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    "chat.completions stream": ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True,
                                                         "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
    "moderations": ("/v1/moderations", {"input": "hi"}),
    "original": ("/api/v1/chat", {"user_prompt": "hi"}),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_refused_server_key_is_never_quoted_to_a_client(refused, call: str) -> None:
    key = refused.new_key("secrecy")
    path, body = CALLS[call]
    log_start = refused.log_path.stat().st_size
    r = httpx.post(refused.url + path, json=body, timeout=30, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code >= 500, (r.status_code, r.text[:300])  # the operator's problem, not the client's key
    for fragment in FRAGMENTS:
        assert fragment not in r.text
        assert all(fragment not in value for value in r.headers.values())
    with open(refused.log_path, "rb") as log:
        log.seek(log_start)
        written = log.read().decode("utf-8", "replace")
    assert not any(fragment in written for fragment in FRAGMENTS)
