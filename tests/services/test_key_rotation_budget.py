"""Rotating a key never resets its budget: the successor's daily and monthly caps count what
its predecessors spent in the same periods, over real HTTP against real PostgreSQL (the
session's chat-api process in front of the fake OpenAI server)."""
from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
from sqlalchemy import create_engine, text

from tests.services.conftest import ChatApiProcess


def _chat(api: ChatApiProcess, secret: str) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "예산 회전"}],
                            "max_tokens": 5}, timeout=30)


def _item(admin: httpx.Client, key_id: str) -> dict:
    return next(k for k in admin.get("/admin/v1/keys").json()["items"] if k["id"] == key_id)


def test_a_rotated_key_keeps_its_predecessors_spend_against_its_caps(chat_api: ChatApiProcess) -> None:
    """The attack: spend up to the cap, ask for a rotation, spend again. The successor must be
    refused (402) as the old key was, and show the old key's spend as its own today and this
    month; each ledger row keeps the key that made it."""
    with httpx.Client(base_url=chat_api.url, headers={"Authorization": f"Bearer {chat_api.admin_token}"},
                      timeout=30) as admin:
        made = admin.post("/admin/v1/keys", json={"name": f"회전 예산 {uuid.uuid4().hex[:6]}",
                                                   "daily_limit_usd": "5", "monthly_limit_usd": "50"})
        made.raise_for_status()
        old_secret, old_id = made.json()["key"], made.json()["item"]["id"]
        assert _chat(chat_api, old_secret).status_code == 200
        chat_api.flush_ledger()
        spent = Decimal(_item(admin, old_id)["spent_today_usd"])
        assert spent > 0
        # the cap is now exactly what was spent: the next request cannot fit
        admin.put(f"/admin/v1/keys/{old_id}/budget",
                  json={"daily_limit_usd": str(spent), "monthly_limit_usd": "50"}).raise_for_status()
        assert _chat(chat_api, old_secret).status_code == 402

        rotated = admin.post(f"/admin/v1/keys/{old_id}/rotate")
        assert rotated.status_code == 201, rotated.text
        new_secret, new_id = rotated.json()["key"], rotated.json()["item"]["id"]
        item = rotated.json()["item"]
        assert (Decimal(item["spent_today_usd"]), Decimal(item["spent_month_usd"])) == (spent, spent)

        refused = _chat(chat_api, new_secret)
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded"

        # the monthly cap counts the chain too
        admin.put(f"/admin/v1/keys/{new_id}/budget",
                  json={"daily_limit_usd": None, "monthly_limit_usd": str(spent)}).raise_for_status()
        refused = _chat(chat_api, new_secret)
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
        assert "monthly" in refused.json()["error"]["message"] or "월" in refused.json()["error"]["message"]

        # with room again, the successor's spend adds to the same budget
        admin.put(f"/admin/v1/keys/{new_id}/budget",
                  json={"daily_limit_usd": "5", "monthly_limit_usd": "50"}).raise_for_status()
        assert _chat(chat_api, new_secret).status_code == 200
        chat_api.flush_ledger()
        after = _item(admin, new_id)
        assert Decimal(after["spent_today_usd"]) > spent
        assert Decimal(after["spent_month_usd"]) == Decimal(after["spent_today_usd"])

        # a second rotation carries the whole chain
        again = admin.post(f"/admin/v1/keys/{new_id}/rotate").json()
        assert Decimal(again["item"]["spent_today_usd"]) == Decimal(after["spent_today_usd"])

    # the ledger rows keep the key that made them
    engine = create_engine(chat_api.pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT client_key_id, count(*) FROM spend_ledger WHERE client_key_id IN "
                                     "(:a, :b) GROUP BY client_key_id"), {"a": old_id, "b": new_id}).all()
    finally:
        engine.dispose()
    assert dict(rows) == {old_id: 1, new_id: 1}
