"""The request pipeline, once per dialect: the same rules hold whatever shape the request has
(the headers test adds /v1/embeddings and /v1/moderations, which go through the same pipeline).

Each case names how its dialect carries a prompt, a caller's own key and an error code; every
test below runs for each of them (pytest parametrization), against real chat_api processes
in front of the fake upstream, on real Postgres.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.processes import stop

RATE_LIMIT = 4  # requests per key per minute on the strict server


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    make_body: Callable[[str], dict[str, Any]]
    user_key: Callable[[str], tuple[dict[str, str], dict[str, Any]]]  # → (headers, body fields)
    stream: bool = False
    odd_bodies: list[dict[str, Any]] = field(default_factory=list)

    def body(self, prompt: str, **extra: Any) -> dict[str, Any]:
        return {**self.make_body(prompt), **({"stream": True} if self.stream and "/api/" not in self.path else {}),
                **extra}

    def error_code(self, r: httpx.Response) -> str:
        data = r.json()
        return data["code"] if "/api/" in self.path else data["error"]["code"]

    def text(self, r: httpx.Response) -> str:
        """The reply text, from a JSON answer or the stream's events."""
        if not self.stream:
            data = r.json()
            if "output_text" in data:
                return data["output_text"]
            if "choices" in data:
                return data["choices"][0]["message"]["content"]
            return "".join(c["text"] for item in data["output"] for c in item["content"])
        return r.text


def _original(prompt: str) -> dict[str, Any]:
    return {"user_prompt": prompt, "max_tokens": 20}


def _chat(prompt: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": prompt}]}


def _responses(prompt: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "max_output_tokens": 20, "input": prompt}


def _in_body(key: str) -> tuple[dict[str, str], dict[str, Any]]:
    return {}, {"use_user_api_key": True, "openai_api_key": key}


def _in_header(key: str) -> tuple[dict[str, str], dict[str, Any]]:
    return {"X-OpenAI-Api-Key": key}, {}


_ORIGINAL_ODD = [{"user_prompt": ["x"]}, {"user_prompt": "x", "conversation_history": [{"role": ["user"], "content": "a"}]},
                 {"user_prompt": "x", "conversation_history": [{"role": {"a": 1}, "content": "a"}]},
                 {"user_prompt": "x", "conversation_history": "not a list"}, {"user_prompt": "x", "model": {"a": 1}},
                 {"user_prompt": "x", "use_user_api_key": True, "openai_api_key": "sk-키가-한국어"},
                 {"user_prompt": "x", "use_user_api_key": True, "openai_api_key": "sk-" + "a" * 5000},
                 {"user_prompt": "x", "max_tokens": 10**30}, {"user_prompt": "x", "temperature": "hot"}]
_CHAT_ODD = [{"model": "gpt-4o-mini", "messages": [{"role": ["user"], "content": "x"}]},
             {"model": "gpt-4o-mini", "messages": [{"role": {"r": "user"}, "content": "x"}]},
             {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream_options": "usage"},
             {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": True,
              "stream_options": ["include_usage"]},
             {"model": "gpt-4o-mini", "messages": "hello"}, {"model": ["gpt-4o-mini"], "messages": []},
             {"model": "gpt-4o-mini", "messages": [["user", "x"]]},
             {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**30}]
_RESPONSES_ODD = [{"model": "gpt-4o-mini", "input": [{"role": ["user"], "content": "x"}]},
                  {"model": "gpt-4o-mini", "input": [{"role": {"r": 1}, "content": "x"}], "stream": True},
                  {"model": "gpt-4o-mini", "input": 42}, {"model": "gpt-4o-mini", "input": "x", "instructions": [1]},
                  {"model": "gpt-4o-mini", "input": [1, 2]}, {"model": 7, "input": "x"},
                  {"model": "gpt-4o-mini", "input": "x", "max_output_tokens": -1}]

CASES = [
    Case("original", "/api/v1/chat", _original, _in_body, odd_bodies=_ORIGINAL_ODD),
    Case("original-stream", "/api/v1/chat/stream", _original, _in_body, stream=True, odd_bodies=_ORIGINAL_ODD),
    Case("chat.completions", "/v1/chat/completions", _chat, _in_header, odd_bodies=_CHAT_ODD),
    Case("chat.completions-stream", "/v1/chat/completions", _chat, _in_header, stream=True, odd_bodies=_CHAT_ODD),
    Case("responses", "/v1/responses", _responses, _in_header, odd_bodies=_RESPONSES_ODD),
    Case("responses-stream", "/v1/responses", _responses, _in_header, stream=True, odd_bodies=_RESPONSES_ODD),
]
NON_STREAMED = [c for c in CASES if not c.stream]
by_dialect = pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
by_non_streamed = pytest.mark.parametrize("case", NON_STREAMED, ids=lambda c: c.name)


@pytest.fixture(scope="module")
def strict_api(pg_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    """No anonymous use, and a small per-key request allowance."""
    proc, api = start_chat_api(pg_url, fake_openai, tmp_path_factory.mktemp("strict_api"),
                               ALLOW_ANONYMOUS="false", RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT))
    yield api
    stop(proc)


def _post(api: ChatApiProcess, case: Case, key: str | None, body: Any = None, *, content: bytes | None = None,
          headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    hs = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    if content is not None:
        hs["Content-Type"] = "application/json"
        return httpx.post(api.url + case.path, content=content, headers=hs, timeout=30, **kw)
    return httpx.post(api.url + case.path, json=body, headers=hs, timeout=30, **kw)


def _nested(levels: int) -> bytes:
    """A JSON object whose nesting is ``levels`` deep, the object itself being level 1."""
    return b'{"x_nest": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


# -- authentication comes first --------------------------------------------------------------------

BODIES_OF_ANY_SHAPE = [b"", b"{", b"[]", b'"x"', _nested(100_000)[:200_000], _nested(65), b"\xff\xfe",
                       b'{"user_prompt": "x", "model": "gpt-4o-mini", "input": "x", "messages": []}']


@by_dialect
@pytest.mark.parametrize("credential", [None, "llms-not-a-real-key", "Basic abc"], ids=["none", "wrong", "not-bearer"])
def test_no_valid_key_is_a_401_whatever_the_body(strict_api, case, credential):
    for content in BODIES_OF_ANY_SHAPE:
        headers = {"Authorization": credential} if credential and credential.startswith("Basic") else None
        key = None if headers or credential is None else credential
        r = _post(strict_api, case, key, content=content, headers=headers)
        assert r.status_code == 401, (content[:20], r.text[:200])
        assert case.error_code(r) == "invalid_client_key"


# -- hostile input never reaches a 500 -------------------------------------------------------------

@by_dialect
def test_json_nested_deeper_than_64_levels_is_invalid_json(strict_api, case):
    key = strict_api.new_key()
    r = _post(strict_api, case, key, content=_nested(65))
    assert (r.status_code, case.error_code(r)) == (400, "invalid_json")
    r = _post(strict_api, case, key, content=_nested(5000))
    assert (r.status_code, case.error_code(r)) == (400, "invalid_json")
    inside = case.body("깊이 64")
    raw = _nested(64)[:-1] + b", " + httpx.Request("POST", "/", json=inside).content[1:]  # 64 levels, a valid turn
    r = _post(strict_api, case, key, content=raw)
    assert r.status_code == 200, r.text[:300]


@by_dialect
def test_odd_shapes_are_a_400_in_the_dialects_shape(strict_api, case):
    for body in case.odd_bodies:
        key = strict_api.new_key()  # the allowance is small: a fresh key per body
        r = _post(strict_api, case, key, {**body, **({"stream": True} if case.stream and "/v1/" in case.path else {})})
        assert r.status_code == 400, (body, r.text[:300])
        assert case.error_code(r)


@by_dialect
def test_a_non_ascii_own_key_is_refused_not_sent(strict_api, case):
    key = strict_api.new_key()
    strict_api.clear_fake()
    headers, fields = case.user_key("sk-한국어-키")
    raw_headers = {k: v.encode() for k, v in headers.items()}  # as raw bytes: httpx would refuse non-ASCII text
    r = httpx.post(strict_api.url + case.path, json=case.body("키", **fields),
                   headers={"Authorization": f"Bearer {key}", **raw_headers}, timeout=30)
    assert r.status_code == 400, r.text[:300]
    assert strict_api.fake_requests() == []


# -- limits ---------------------------------------------------------------------------------------

@by_dialect
def test_the_per_minute_allowance_answers_429_with_retry_after(strict_api, case):
    key = strict_api.new_key()
    # The allowance is a sliding minute: a run that crosses a minute boundary may pass a little
    # more than the allowance before the first 429 (the previous minute's use decays), never less.
    served = 0
    for i in range(2 * RATE_LIMIT + 1):
        r = _post(strict_api, case, key, case.body(f"한도 {i}"))
        if r.status_code != 200:
            break
        served += 1
    assert RATE_LIMIT <= served <= 2 * RATE_LIMIT
    assert r.status_code == 429 and case.error_code(r) == "rate_limited"
    # Used up early in a minute, the wait runs past that minute's end until enough of its use
    # has decayed: at most two minutes, never zero.
    assert 1 <= int(r.headers["retry-after"]) <= 120
    other = strict_api.new_key()
    assert _post(strict_api, case, other, case.body("다른 키")).status_code == 200, "the allowance is per key"


# -- idempotency ----------------------------------------------------------------------------------

@by_non_streamed
def test_an_idempotency_key_runs_the_turn_once(strict_api, case):
    key = strict_api.new_key()
    strict_api.clear_fake()
    headers = {"Idempotency-Key": "pipeline-once"}
    first = _post(strict_api, case, key, case.body("한 번만"), headers=headers)
    again = _post(strict_api, case, key, case.body("한 번만"), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert len(strict_api.fake_requests()) == 1
    other = _post(strict_api, case, key, case.body("다른 본문"), headers=headers)
    assert (other.status_code, case.error_code(other)) == (422, "idempotency_key_reused")


# -- key policy: fallback ---------------------------------------------------------------------------

@by_dialect
def test_a_rejected_own_key_falls_back_to_the_server_key(strict_api, case):
    key = strict_api.new_key()
    strict_api.clear_fake()
    headers, fields = case.user_key("sk-invalid-user-key-0001")
    r = _post(strict_api, case, key, case.body("대신 내 주세요", **fields), headers=headers)
    assert r.status_code == 200, r.text[:300]
    assert "fake reply to: 대신 내 주세요" in case.text(r).replace('"', "").replace("\\", "") or case.stream
    if not case.stream:
        assert r.headers["x-llm-key-source"] == "server"
        assert r.headers["x-llm-fallback-reason"] == "user_key_rejected"
    keys = [seen["key"] for seen in strict_api.fake_requests()]
    assert keys == ["sk-invalid-user-key-0001", "sk-server-0123456789abcdef"]


# -- metrics and headers ------------------------------------------------------------------------------

def _requests_counter(api: ChatApiProcess) -> dict[tuple[str, str, str], float]:
    text = httpx.get(api.url + "/metrics").text
    return {(s.labels["route"], s.labels["status"], s.labels["model"]): s.value
            for family in text_string_to_metric_families(text) if family.name == "llm_gateway_requests"
            for s in family.samples if s.name == "llm_gateway_requests_total"}


@by_dialect
def test_metrics_label_the_family_and_the_ledger_keeps_the_upstreams_dated_name(strict_api, case):
    """The fake upstream answers as OpenAI does, with the dated snapshot it served."""
    key, key_id = strict_api.new_key_and_id()
    route = case.path
    before = _requests_counter(strict_api)
    r = _post(strict_api, case, key, case.body("스냅샷"))
    assert r.status_code == 200
    if not case.stream:
        assert r.headers["x-llm-key-source"] == "server"
        assert float(r.headers["x-llm-cost-usd"]) > 0
    r.read()
    after = _requests_counter(strict_api)
    assert after.get((route, "200", "gpt-4o-mini"), 0) == before.get((route, "200", "gpt-4o-mini"), 0) + 1
    assert not any("2024" in model for _, _, model in after), "a dated name never becomes a label"
    strict_api.flush_ledger()
    with psycopg.connect(strict_api.pg_url) as conn:
        models = conn.execute("SELECT model FROM spend_ledger WHERE client_key_id = %s", (key_id,)).fetchall()
    assert models == [("gpt-4o-mini-2024-07-18",)]


@by_dialect
def test_a_refusal_is_counted_under_its_status(strict_api, case):
    before = _requests_counter(strict_api)
    r = _post(strict_api, case, "llms-wrong")
    assert r.status_code == 401
    after = _requests_counter(strict_api)
    assert after[(case.path, "401", "other")] == before.get((case.path, "401", "other"), 0) + 1


# -- headers every answer carries ---------------------------------------------------------------------

def _embeddings(prompt: str) -> dict[str, Any]:
    return {"model": "text-embedding-3-small", "input": prompt}


def _moderations(prompt: str) -> dict[str, Any]:
    return {"model": "omni-moderation-latest", "input": prompt}


HEADER_CASES = [*CASES, Case("embeddings", "/v1/embeddings", _embeddings, _in_header),
                Case("moderations", "/v1/moderations", _moderations, _in_header)]
UPSTREAM_HEADERS = {"openai-processing-ms": "7", "x-ratelimit-limit-requests": "10000",
                    "x-ratelimit-remaining-requests": "9999", "x-ratelimit-reset-requests": "6ms"}  # the fake's


def _cost_sent(case: Case, r: httpx.Response) -> Decimal:
    """The cost the answer reports: a header on a JSON answer; on an OpenAI stream, the SSE
    comment line after the last event; on the original dialect's stream, its final event."""
    if not case.stream:
        return Decimal(r.headers["x-llm-cost-usd"])
    assert "x-llm-cost-usd" not in r.headers  # not known when the headers leave
    if case.path.startswith("/api/"):
        final = json.loads([line for line in r.text.splitlines() if line.startswith("data: ")][-1][len("data: "):])
        return Decimal(str(final["cost_usd"]))
    found = re.findall(r"^: x-llm-cost-usd: (\d+\.\d{8})$", r.text, re.M)
    assert len(found) == 1, r.text[-300:]
    return Decimal(found[0])


@pytest.mark.parametrize("case", HEADER_CASES, ids=lambda c: c.name)
def test_every_answer_carries_its_request_id_key_source_and_cost(strict_api, case):
    """Every dialect, streamed or not, and embeddings and moderations: the upstream's request
    id and its processing and rate-limit headers pass through, the key source is a header
    (streams too), and the cost the answer reports is the ledger row's."""
    key, key_id = strict_api.new_key_and_id()
    strict_api.clear_fake()
    r = _post(strict_api, case, key, case.body("헤더"))
    assert r.status_code == 200, r.text[:300]
    assert len(strict_api.fake_requests()) == 1
    assert re.fullmatch(r"req_fake_\d+", r.headers["x-request-id"])  # the upstream's, as the SDK expects
    assert {name: r.headers.get(name) for name in UPSTREAM_HEADERS} == UPSTREAM_HEADERS
    assert r.headers["x-llm-key-source"] == "server"
    cost = _cost_sent(case, r)
    strict_api.flush_ledger()
    with psycopg.connect(strict_api.pg_url) as conn:
        [(nanos,)] = conn.execute("SELECT cost_nanos FROM spend_ledger WHERE client_key_id = %s", (key_id,)).fetchall()
    assert abs(cost - Decimal(nanos) / 10**9) <= Decimal("0.00000001"), (cost, nanos)
    assert cost == 0 if case.name == "moderations" else cost > 0  # moderations are not billed


@pytest.mark.parametrize("case", [c for c in HEADER_CASES if c.path.startswith("/v1/")], ids=lambda c: c.name)
def test_a_refusal_carries_a_request_id_of_its_own(strict_api, case):
    """Every /v1 answer has a request id (the contract; the original dialect names its
    request in the body): with no upstream answer to take it from, the gateway makes one,
    a new one each time."""
    ids = {_post(strict_api, case, "llms-wrong", case.body("거절")).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and all(ids)
