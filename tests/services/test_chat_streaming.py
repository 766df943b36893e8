"""Streams reach the client as produced, and leave a ledger row even when cut short."""
from __future__ import annotations

import statistics
import time

import httpx
import orjson
import psycopg


def _ledger_rows(api, since_id: int):
    with psycopg.connect(api.pg_url) as conn:
        return conn.execute("SELECT id, outcome, estimated, output_tokens, route FROM spend_ledger WHERE id > %s "
                            "ORDER BY id", (since_id,)).fetchall()


def _max_id(api) -> int:
    with psycopg.connect(api.pg_url) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM spend_ledger").fetchone()[0]


def test_chunks_arrive_as_produced(chat_api, client_key):
    """The fake upstream sends 20 chunks 50 ms apart; the gateway must not coalesce them."""
    arrivals = []
    with httpx.stream("POST", chat_api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {client_key}"},
                      json={"model": "fake-stream-slow", "stream": True,
                            "messages": [{"role": "user", "content": "slow"}]}, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and ('"content":"w' in line or '"content":" w' in line):
                arrivals.append(time.perf_counter())
    assert len(arrivals) == 20
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert statistics.median(gaps) > 0.03, gaps


def test_original_stream_events(chat_api, client_key):
    with httpx.stream("POST", chat_api.url + "/api/v1/chat/stream", headers={"Authorization": f"Bearer {client_key}"},
                      json={"user_prompt": "스트림", "request_id": "stream-conv"}, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.read().decode().split("\n\n") if block]
    kinds = [e.split("\n")[0] for e in events]
    assert kinds[-1] == "event: done" and set(kinds[:-1]) == {"event: delta"}
    done = orjson.loads(events[-1].split("data: ", 1)[1])
    assert done["output_text"] == "fake reply to: 스트림" and done["output_tokens"] == 12
    assert done["conversation_turn"] == 1 and done["cost"] >= 0


def test_client_abort_leaves_an_estimated_ledger_row(chat_api, client_key):
    before = _max_id(chat_api)
    with httpx.stream("POST", chat_api.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {client_key}"},
                      json={"model": "fake-stream-slow", "stream": True,
                            "messages": [{"role": "user", "content": "abort me"}]}, timeout=30) as r:
        for n, _ in enumerate(r.iter_lines()):
            if n >= 6:
                break  # the client goes away mid-stream
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.3)  # until the server notices the client left (the ledger part is flushed)
        chat_api.flush_ledger()
        rows = _ledger_rows(chat_api, before)
    assert len(rows) == 1
    _, outcome, estimated, output_tokens, route = rows[0]
    assert (outcome, estimated, route) == ("aborted", True, "/v1/chat/completions")
    assert 0 < output_tokens < 40


def test_completed_stream_is_exact(chat_api, client_key):
    before = _max_id(chat_api)
    with httpx.stream("POST", chat_api.url + "/v1/responses", headers={"Authorization": f"Bearer {client_key}"},
                      json={"model": "gpt-4o-mini", "stream": True, "input": "끝까지"}, timeout=30) as r:
        r.read()
    chat_api.flush_ledger()
    rows = _ledger_rows(chat_api, before)
    assert [(o, e, t) for _, o, e, t, _ in rows] == [("ok", False, 12)]
