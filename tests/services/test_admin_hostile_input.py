"""Hostile query strings, path values and bodies on the admin API (/admin/v1): each is a clear
4xx in the admin API's {code, message, field} shape, never a 500, and leaves no traceback in
the process's log (a traceback quotes the failed statement's parameters: key hashes, names).
A real chat-api process on real PostgreSQL, called with the admin token."""
from __future__ import annotations

import httpx
import pytest

NUL = "\x00"
FAR_FUTURE, FAR_PAST = "9999-12-31T23:59:59", "0001-01-01T00:00:00"

GETS = [
    ("/conversations/99999999999999999999/turns", {}),  # past PostgreSQL's integer
    ("/conversations/-1/turns", {}),
    ("/requests/" + "%00", {}),
    ("/conversations", {"q": NUL}),
    ("/conversations", {"client_key_id": NUL}),
    ("/conversations", {"model": "gpt" + NUL}),
    ("/requests", {"client_key_id": NUL}),
    ("/conversations", {"since": FAR_FUTURE}),
    ("/conversations", {"until": FAR_PAST}),
    ("/spend", {"since": FAR_FUTURE}),
    ("/spend", {"until": FAR_PAST}),
    ("/pii", {"since": FAR_FUTURE}),
    ("/requests.csv", {"since": FAR_FUTURE}),
    ("/spend/ledger.csv", {"until": FAR_PAST}),
    ("/requests", {"since": "9999-12-31T23:59:59-14:00"}),
]


@pytest.fixture
def log_tail(chat_api):
    """What the process logs during the test."""
    start = chat_api.log_path.stat().st_size

    def read() -> str:
        with open(chat_api.log_path, "rb") as log:
            log.seek(start)
            return log.read().decode("utf-8", "replace")
    return read


def _admin(chat_api) -> httpx.Client:
    return httpx.Client(base_url=chat_api.url + "/admin/v1", timeout=30,
                        headers={"Authorization": f"Bearer {chat_api.admin_token}", "Accept-Language": "en"})


@pytest.mark.parametrize(("path", "params"), GETS, ids=[f"{p}?{','.join(q)}" for p, q in GETS])
def test_a_hostile_admin_query_is_a_4xx_without_a_traceback(chat_api, log_tail, path: str, params: dict) -> None:
    with _admin(chat_api) as admin:
        r = admin.get(path, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "code" in r.json()["detail"]
    assert "Traceback" not in log_tail()


@pytest.mark.parametrize("name", ["team" + NUL, NUL])
def test_a_key_name_with_a_nul_is_refused_and_nothing_is_logged(chat_api, log_tail, name: str) -> None:
    with _admin(chat_api) as admin:
        r = admin.post("/keys", json={"name": name})
    assert r.status_code in (400, 422), (r.status_code, r.text[:300])
    assert "Traceback" not in log_tail() and "key_hash" not in log_tail()
