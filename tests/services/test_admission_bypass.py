"""Budget admission cannot be got around (issue 12): every billable input is counted and the
output worst case is multiplied by n, so each bypass that a hostile caller tried is refused
before the upstream is called. Real chat-api process, real Postgres, the fake upstream."""
from __future__ import annotations

import httpx
import psycopg
import pytest

BIG = "x" * 800_000  # ~200,000 tokens by the estimate: $0.03 of gpt-4o-mini input


def _post(api, key: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(api.url + path, json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}", "Accept-Language": "en"})


def _chat(**extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}


def _refused_on_a_budgeted_key_only(api, client_key: str, name: str, path: str, body: dict, code: str) -> str:
    """``body`` on a key with a daily budget: 400 ``code``, nothing sent upstream; on a key
    without a budget (nothing to protect) it goes through. Returns the budgeted key."""
    budgeted = api.issue_key(name, daily_usd="5")
    api.clear_fake()
    r = _post(api, budgeted, path, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert api.fake_requests() == []
    assert _post(api, client_key, path, body).status_code == 200
    return budgeted


ATTACKS = {
    "tools": ("/v1/chat/completions", _chat(tools=[{"type": "function", "function": {
        "name": "f", "description": BIG, "parameters": {"type": "object"}}}])),
    "tool_call_arguments": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": BIG}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}),
    # 30 images of unknown size: 30 × 48,169 tokens at gpt-4o-mini's image rule. (3,000 of them
    # is refused earlier still, by the per-minute token allowance: see below.)
    "images": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"https://example.invalid/{i}.png"}} for i in range(30)]}]}),
    "function_call_output": ("/v1/responses", {"model": "gpt-4o-mini", "input": [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": BIG}]}),
    # 150,000 Hangul syllables: under the 200,000-character prompt limit, ~150,000 tokens
    "instructions": ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "instructions": "가" * 150_000}),
    "n_choices": ("/v1/chat/completions", _chat(n=128, max_tokens=12)),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_bypass_is_refused_before_the_upstream(chat_api, attack: str) -> None:
    # $0.0001 a day: far below any of the attacks' worst case, above one plain "hi".
    key = chat_api.issue_key(f"bypass-{attack}", daily_usd="0.0001")
    path, body = ATTACKS[attack]
    chat_api.clear_fake()
    r = _post(chat_api, key, path, body)
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert chat_api.fake_requests() == []
    # and the key still works for what its budget covers
    assert _post(chat_api, key, "/v1/chat/completions", _chat(max_tokens=12)).status_code == 200


def test_three_thousand_images_never_reach_the_upstream(chat_api) -> None:
    key = chat_api.issue_key("bypass-3000-images", daily_usd="0.001")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"https://example.invalid/{i}.png"}} for i in range(3000)]}]}
    chat_api.clear_fake()
    r = _post(chat_api, key, "/v1/chat/completions", body)
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")  # 144M tokens > 2M a minute
    assert chat_api.fake_requests() == []


def test_the_larger_output_limit_is_the_one_reserved(chat_api) -> None:
    # "hi" = 5 tokens × $0.15/1M; 1 output token × $0.60/1M → 1.35 µUSD, 12 → 7.95 µUSD.
    key = chat_api.issue_key("bypass-max-completion", daily_usd="0.000005")
    chat_api.clear_fake()
    r = _post(chat_api, key, "/v1/chat/completions", _chat(max_completion_tokens=1, max_tokens=12))
    assert r.status_code == 402, r.text
    assert chat_api.fake_requests() == []
    assert _post(chat_api, key, "/v1/chat/completions", _chat(max_completion_tokens=1)).status_code == 200


@pytest.mark.parametrize(("body", "code"), [
    (_chat(max_tokens=10**12), "max_tokens_too_large"),
    (_chat(max_completion_tokens=10**12), "max_tokens_too_large"),
    (_chat(n=129), "invalid_field"),
    (_chat(n=0), "invalid_field"),
    (_chat(n="2"), "invalid_field"),
])
def test_absurd_limits_are_refused(chat_api, client_key, body: dict, code: str) -> None:
    chat_api.clear_fake()
    r = _post(chat_api, client_key, "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert chat_api.fake_requests() == []


FILE_PART = {"type": "file", "file": {"file_id": "file-abc"}}
AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


@pytest.mark.parametrize("part", [FILE_PART, AUDIO_PART], ids=["file", "audio"])
def test_unboundable_input_is_refused_on_a_budgeted_key_only(chat_api, client_key, part: dict) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, part]}]}
    _refused_on_a_budgeted_key_only(chat_api, client_key, "bypass-file", "/v1/chat/completions", body,
                                    "input_not_estimable")


def test_n_choices_are_billed_and_reserved(chat_api) -> None:
    # The fake bills n × 12 output tokens as OpenAI does; the row must say so.
    key, key_id = chat_api.new_key_and_id("bypass-n-billed")
    r = _post(chat_api, key, "/v1/chat/completions", _chat(n=3, max_tokens=12))
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 3
    chat_api.flush_ledger()
    with psycopg.connect(chat_api.pg_url) as conn:
        output = conn.execute("SELECT output_tokens FROM spend_ledger WHERE client_key_id = %s",
                              (key_id,)).fetchone()
    assert output == (36,)


def test_a_chained_response_reserves_the_context_it_is_billed_for(chat_api) -> None:
    """OpenAI bills a ``previous_response_id`` chain's whole context as input again: a
    one-word turn on a 47,500-token response costs as much as that response's input. The
    hold must count it, or every chained turn gets past the cap for the price of "hi"."""
    # A 190,000-character first turn: ~47,500 tokens × $0.15/1M ≈ $0.0071; 16 output tokens.
    key, key_id = chat_api.new_key_and_id("bypass-chain")
    r = httpx.put(chat_api.url + f"/admin/v1/keys/{key_id}/budget", json={"daily_limit_usd": "0.01", "monthly_limit_usd": None},
                  headers={"Authorization": f"Bearer {chat_api.admin_token}"})
    assert r.status_code == 200, r.text
    first = _post(chat_api, key, "/v1/responses", {"model": "gpt-4o-mini", "input": "x" * 190_000,
                                                    "max_output_tokens": 16})
    assert first.status_code == 200, first.text
    chat_api.clear_fake()
    # ~$0.0029 left: "hi" alone fits, "hi" on top of the chain (another ~$0.0071) does not.
    r = _post(chat_api, key, "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 16,
                                                "previous_response_id": first.json()["id"]})
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert chat_api.fake_requests() == []
    assert _post(chat_api, key, "/v1/responses", {"model": "gpt-4o-mini", "input": "hi",
                                                  "max_output_tokens": 16}).status_code == 200


def test_a_stored_prompt_template_is_refused_on_a_budgeted_key_only(chat_api, client_key) -> None:
    """A Responses ``prompt`` names a template stored upstream: its text (any length) is
    billed as input, and the body says nothing of its size."""
    body = {"model": "gpt-4o-mini", "input": "hi", "prompt": {"id": "pmpt_abc123", "version": "2",
                                                             "variables": {"name": "x"}}}
    _refused_on_a_budgeted_key_only(chat_api, client_key, "bypass-prompt-template", "/v1/responses", body,
                                    "input_not_estimable")


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", _chat(service_tier="priority", max_tokens=12)),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "service_tier": "priority", "max_output_tokens": 16}),
], ids=["chat.completions", "responses"])
def test_a_dearer_service_tier_is_refused_on_a_budgeted_key_only(chat_api, client_key, path: str, body: dict) -> None:
    """``service_tier: "priority"`` is billed at the priority rates (about twice the
    standard ones), which the catalogue does not price: the hold and the row would count it
    at half what OpenAI bills. Refused where a budget applies, as an unpriced model is."""
    budgeted = _refused_on_a_budgeted_key_only(chat_api, client_key, "bypass-priority", path, body,
                                               "unpriced_service_tier")
    for cheaper in ("auto", "default", "flex"):
        assert _post(chat_api, budgeted, path, {**body, "service_tier": cheaper}).status_code == 200


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                                  {"type": "code_interpreter", "container": {"type": "auto"}},
                                  {"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.invalid"}],
                         ids=lambda t: t["type"])
def test_a_tool_the_upstream_runs_is_refused_on_a_budgeted_key_only(chat_api, client_key, tool: dict) -> None:
    """A hosted tool's results (search hits, files, a remote server's output) are billed as
    input and its calls carry fees: nothing in the body bounds them."""
    body = {"model": "gpt-4o-mini", "input": "hi", "tools": [tool]}
    budgeted = _refused_on_a_budgeted_key_only(chat_api, client_key, "bypass-hosted-tool", "/v1/responses", body,
                                               "input_not_estimable")
    function = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    assert _post(chat_api, budgeted, "/v1/responses", {**body, "tools": [function]}).status_code == 200
