"""The console's "now" view, its 24-hour charts and the budget-risk columns, over real HTTP
against real PostgreSQL: a scripted mix of client requests (answers, streams, 400, 402, 429,
an own-key fallback, personal data) sent to a chat-api process, then read back from the admin
API. This module has its own database, so every count is exact."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tests.services.conftest import EXTRA_MODELS, ChatApiProcess, start_chat_api
from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import stop
from tests.support.request_mix import MixResult, create_keys, run_mix


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    url = create_database("llm_now")
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def api(db_url: str, fake_openai: str, tmp_path_factory) -> Iterator[ChatApiProcess]:
    # no auth cache: a key's row as changed by a test (an expiry moved into the past) applies
    # to the next request
    proc, api = start_chat_api(db_url, fake_openai, tmp_path_factory.mktemp("now"), AUTH_CACHE_SECONDS="0")
    yield api
    stop(proc)


@pytest.fixture(scope="module")
def admin(api: ChatApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.admin_token}"},
                      timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def mix(api: ChatApiProcess, admin: httpx.Client) -> tuple[MixResult, dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    keys = create_keys(admin, tag)
    result = run_mix(api.url, keys, tag)
    admin.post("/admin/v1/ledger/flush").raise_for_status()  # the ledger and the request log written
    return result, {"busy": keys.busy[0], "fallback": keys.fallback[0], "capped": keys.capped[0]}


def test_now_counts_the_mix_by_status_class_with_latency_and_ttft(
        admin: httpx.Client, mix: tuple[MixResult, dict[str, str]]) -> None:
    result, _ = mix
    assert result.by_class() == {"2xx": 5, "4xx": 3}
    now = admin.get("/admin/v1/now").json()
    assert (now["requests"], now["errors"], now["by_class"]) == (8, 3, result.by_class())
    assert now["streams"] == 2 == result.streams
    listed = admin.get("/admin/v1/requests", params={"status": "2xx"}).json()["items"]
    assert sum(i["ttft_ms"] is not None for i in listed) == 2  # the streams, and only them
    assert 0 <= now["ttft_p50_ms"] <= now["ttft_p95_ms"]
    assert 0 <= now["p50_ms"] <= now["p95_ms"]
    overview = admin.get("/admin/v1/overview").json()
    assert {k: overview["last_15m"][k] for k in ("requests", "errors", "by_class", "streams")} == {
        "requests": 8, "errors": 3, "by_class": result.by_class(), "streams": 2}
    assert (overview["today"]["requests"], overview["today"]["errors"]) == (8, 3)


def test_timeseries_buckets_sum_to_the_mix_and_the_ledger(admin: httpx.Client,
                                                          mix: tuple[MixResult, dict[str, str]]) -> None:
    result, _ = mix
    series = admin.get("/admin/v1/timeseries").json()
    buckets = series["buckets"]
    assert (series["hours"], series["bucket_minutes"], len(buckets)) == (24, 60, 24)
    starts = [datetime.fromisoformat(b["start"].replace("Z", "+00:00")) for b in buckets]
    assert all(b - a == timedelta(hours=1) for a, b in zip(starts, starts[1:], strict=False))
    assert sum(b["requests"] for b in buckets) == 8 and sum(b["errors"] for b in buckets) == 3
    classes: dict[str, int] = {}
    for b in buckets:
        for c, n in b["by_class"].items():
            classes[c] = classes.get(c, 0) + n
    assert classes == result.by_class()
    assert sum(b["streams"] for b in buckets) == 2
    busy = [b for b in buckets if b["requests"]]
    assert all(b["p50_ms"] is not None and b["p50_ms"] <= b["p95_ms"] for b in busy)
    assert all(b["p50_ms"] is None and b["cost_usd"] == "0.00000000" for b in buckets if not b["requests"])
    # cost comes from the ledger: the same total as the overview's today (all of it is today)
    overview = admin.get("/admin/v1/overview").json()
    assert sum(Decimal(b["cost_usd"]) for b in buckets) == Decimal(overview["today"]["cost_usd"]) > 0
    finer = admin.get("/admin/v1/timeseries", params={"hours": 2, "bucket_minutes": 15}).json()
    assert len(finer["buckets"]) == 8 and sum(b["requests"] for b in finer["buckets"]) == 8
    for bad in ({"hours": 0}, {"hours": 1000}, {"bucket_minutes": 1}):
        assert admin.get("/admin/v1/timeseries", params=bad).status_code == 422, bad


def test_keys_say_when_each_was_last_used(admin: httpx.Client, mix: tuple[MixResult, dict[str, str]]) -> None:
    _, ids = mix
    unused = admin.post("/admin/v1/keys", json={"name": "아직 안 씀"}).json()["item"]
    assert unused["last_used_at"] is None
    items = {k["id"]: k for k in admin.get("/admin/v1/keys").json()["items"]}
    for key_id in ids.values():  # refusals count as use: the capped key's only request was a 402
        used = datetime.fromisoformat(items[key_id]["last_used_at"].replace("Z", "+00:00"))
        assert used >= datetime.fromisoformat(items[key_id]["created_at"].replace("Z", "+00:00"))
    assert items[unused["id"]]["last_used_at"] is None
    assert items[ids["capped"]]["refused_today"] == 1
    risk = {k["id"]: k for k in admin.get("/admin/v1/overview").json()["budget_risk"]}
    assert ids["capped"] in risk and risk[ids["capped"]]["last_used_at"] is not None


def test_pii_counts_per_key_and_policy_changes_are_audited(admin: httpx.Client,
                                                          mix: tuple[MixResult, dict[str, str]]) -> None:
    result, ids = mix
    pii = admin.get("/admin/v1/pii").json()
    assert pii["total"] == result.pii_values
    per_key = {k["client_key_id"]: k["counts"] for k in pii["by_key"]}
    assert per_key == {ids["busy"]: result.pii_values}
    one = admin.get("/admin/v1/pii", params={"client_key_id": ids["fallback"]}).json()
    assert one["total"] == {} and one["by_key"] == []

    r = admin.put(f"/admin/v1/keys/{ids['busy']}/pii-policy", json={"pii_policy": "block"},
                  headers={"X-Admin-Actor": "console"})
    assert r.status_code == 200 and r.json()["item"]["pii_policy"] == "block"
    admin.put(f"/admin/v1/keys/{ids['busy']}/pii-policy", json={"pii_policy": None}).raise_for_status()
    audit = admin.get("/admin/v1/audit").json()["items"]
    changes = [a for a in audit if a["action"] == "pii_policy_changed" and a["key_id"] == ids["busy"]]
    assert [(a["detail"]["pii_policy_before"], a["detail"]["pii_policy"], a["actor"]) for a in changes] == [
        ("block", None, "admin-api"), (None, "block", "console")]  # newest first


def test_prices_list_extra_models_as_unpriced(admin: httpx.Client) -> None:
    prices = admin.get("/admin/v1/prices").json()
    assert prices["extra_models"] == sorted(EXTRA_MODELS.split(","))
    assert not set(prices["extra_models"]) & {m["model"] for m in prices["models"]}


def test_rotating_a_key_keeps_its_settings_and_stops_the_old_secret(api: ChatApiProcess, admin: httpx.Client) -> None:
    made = admin.post("/admin/v1/keys", json={"name": "회전 대상", "daily_limit_usd": "3", "monthly_limit_usd": "40",
                                              "may_use_server_key": True, "pii_policy": "block"}).json()
    old_id, old_secret = made["item"]["id"], made["key"]

    def chat(secret: str) -> httpx.Response:
        return httpx.post(f"{api.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "안녕"}],
                                "max_tokens": 5}, timeout=30)

    assert chat(old_secret).status_code == 200
    r = admin.post(f"/admin/v1/keys/{old_id}/rotate", headers={"X-Admin-Actor": "console"})
    assert r.status_code == 201, r.text
    body = r.json()
    new, previous = body["item"], body["previous"]
    assert body["key"].startswith("llms-") and body["key"] != old_secret and new["id"] != old_id
    assert (new["name"], new["daily_limit_usd"], new["monthly_limit_usd"], new["pii_policy"], new["revoked_at"]) == (
        "회전 대상", "3.00000000", "40.00000000", "block", None)
    assert previous["id"] == old_id and previous["revoked_at"] is not None
    assert chat(body["key"]).status_code == 200
    refused = chat(old_secret)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "client_key_revoked"
    audit = admin.get("/admin/v1/audit").json()["items"]
    rotated = next(a for a in audit if a["action"] == "key_rotated" and a["key_id"] == new["id"])
    assert rotated["detail"]["previous_key_id"] == old_id and rotated["actor"] == "console"
    assert body["key"] not in str(audit)  # the secret is recorded nowhere
    again = admin.post(f"/admin/v1/keys/{old_id}/rotate")
    assert again.status_code == 422 and again.json()["detail"]["code"] == "client_key_revoked"
    assert admin.post("/admin/v1/keys/nope/rotate").status_code == 404


def test_a_key_with_an_expiry_is_refused_with_401_after_it(api: ChatApiProcess, admin: httpx.Client,
                                                          db_url: str) -> None:
    from datetime import UTC

    from sqlalchemy import create_engine, text

    soon = datetime.now(UTC) + timedelta(days=30)
    past = admin.post("/admin/v1/keys", json={"name": "만료", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 400 and past.json()["detail"]["code"] == "invalid_expiry"
    made = admin.post("/admin/v1/keys", json={"name": "만료", "expires_at": soon.isoformat()}).json()
    key_id, secret = made["item"]["id"], made["key"]
    assert made["item"]["expires_at"] == soon.isoformat().replace("+00:00", "Z")

    def chat() -> httpx.Response:
        return httpx.post(f"{api.url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "안녕"}],
                                "max_tokens": 5}, timeout=30)

    assert chat().status_code == 200
    assert admin.put(f"/admin/v1/keys/{key_id}/expiry", json={"expires_at": "2020-01-01T00:00:00"}).status_code == 400
    r = admin.put(f"/admin/v1/keys/{key_id}/expiry", json={"expires_at": None})
    assert r.status_code == 200 and r.json()["item"]["expires_at"] is None
    admin.put(f"/admin/v1/keys/{key_id}/expiry", json={"expires_at": soon.isoformat()}).raise_for_status()
    audit = [a for a in admin.get("/admin/v1/audit").json()["items"] if a["action"] == "expiry_changed"
             and a["key_id"] == key_id]
    assert [a["detail"]["expires_at"] for a in audit] == [soon.isoformat().replace("+00:00", "Z"), None]

    # the moment passes (the row says so; the clock is not ours to move in another process)
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE client_keys SET expires_at = now() - interval '1 second' WHERE id = :i"),
                     {"i": key_id})
    engine.dispose()
    refused = chat()
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "client_key_expired"
    en = httpx.post(f"{api.url}/api/v1/chat", headers={"Authorization": f"Bearer {secret}", "Accept-Language": "en"},
                    json={"user_prompt": "hi"}, timeout=30)
    assert en.status_code == 401 and "expired" in en.text
    # a rotated key with an expiry keeps its lifetime, from now
    other = admin.post("/admin/v1/keys", json={"name": "만료 교체", "expires_at": soon.isoformat()}).json()["item"]
    rotated = admin.post(f"/admin/v1/keys/{other['id']}/rotate").json()["item"]
    lifetime = datetime.fromisoformat(rotated["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30, minutes=1)
