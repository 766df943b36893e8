"""Two chat-api replicas share one database: conversations and budgets hold across them."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_one_conversation_alternating_replicas_keeps_its_history(stack):
    marker = uuid.uuid4().hex[:12]
    request_id = f"e2e-conv-{marker}"
    first = httpx.post(f"{stack.chat_api_urls[0]}/api/v1/chat", headers=stack.auth(), timeout=60,
                       json={"request_id": request_id, "user_prompt": f"first turn {marker}", "max_tokens": 50})
    assert first.status_code == 200, first.text
    assert first.json().get("conversation_turn") == 1
    second = httpx.post(f"{stack.chat_api_urls[1]}/api/v1/chat", headers=stack.auth(), timeout=60,
                        json={"request_id": request_id, "user_prompt": f"second turn {marker}", "max_tokens": 50})
    assert second.status_code == 200, second.text
    assert second.json().get("conversation_turn") == 2, second.json()

    seen = httpx.get(f"{stack.fake_root}/_fake/requests").json()
    upstream = [r for r in seen if f"second turn {marker}" in json.dumps(r["body"], ensure_ascii=False)]
    assert upstream, "the second turn never reached the upstream"
    assert f"first turn {marker}" in json.dumps(upstream[-1]["body"], ensure_ascii=False), \
        "replica 2 did not send replica 1's turn as history"


def test_one_budget_holds_across_replicas_under_concurrent_load(stack):
    """gpt-4o, 12 output tokens (the fake's maximum) ~ 13 millicents a request; $0.0005 admits 3."""
    budget_usd = Decimal("0.0005")
    key = stack.issue_key(f"e2e-budget-{uuid.uuid4().hex[:6]}", daily_usd=budget_usd)

    def call(i: int) -> httpx.Response:
        url = stack.chat_api_urls[i % 2]
        return httpx.post(f"{url}/api/v1/chat", headers=stack.auth(key), timeout=60,
                          json={"user_prompt": f"budget probe {i:02d}", "model": "gpt-4o", "max_tokens": 12})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))

    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 402}, statuses
    ok = [r.json() for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 402]
    assert ok, "the budget admits at least one request"
    assert refused, "20 requests cannot all fit in the budget"
    for r in refused:
        body = r.json()
        assert body.get("error") or body.get("detail"), body
    cheapest = max(1, min(b["cost"] for b in ok))  # millicents (1e-5 USD)
    budget_millicents = int(budget_usd * 100_000)
    # Admission reserves before the upstream call: at most one request's worst case over.
    assert len(ok) <= budget_millicents // cheapest + 1, (len(ok), [b["cost"] for b in ok])
    assert sum(b["cost"] for b in ok) <= budget_millicents + cheapest + 1
