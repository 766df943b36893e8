"""A chat-api process routing over three fake upstreams (Azure-shaped ``az`` first, OpenAI
``oa`` second, an OpenAI-compatible ``cmp`` for a model only it has), on real Postgres."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from domain.adapters.prices import BUILTIN_CATALOG
from tests.services.conftest import ChatApiProcess, start_chat_api
from tests.support.fake_upstreams import FakeUpstream
from tests.support.processes import BIN, ROOT, free_port, stop

KEYS = {"AZ_KEY": "az-key-0001", "OA_KEY": "sk-oa-key-0002", "CMP_KEY": "sk-cmp-key-0003"}
USER_KEY = "sk-user-own-key-77777"


def upstreams_yaml(fakes: dict[str, FakeUpstream], az_base: str | None = None) -> str:
    return f"""
upstreams:
  - name: az
    kind: azure
    base_url: {az_base or fakes["az"].root}
    api_key_env: AZ_KEY
    api_version: "2024-10-21"
    models: {{gpt-4o-mini: kc-mini, gpt-4o: kc-4o}}
  - name: oa
    kind: openai
    base_url: {fakes["oa"].openai_base}
    api_key_env: OA_KEY
    priority: 1
    models: [gpt-4o-mini, gpt-4o, gpt-4.1]
  - name: cmp
    kind: openai_compatible
    base_url: {fakes["cmp"].openai_base}
    api_key_env: CMP_KEY
    models: [solar-pro]
"""


def write_config(tmp: Path, fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    (tmp / "upstreams.yaml").write_text(upstreams_yaml(fakes))
    catalog = json.loads(BUILTIN_CATALOG.read_text())
    # Azure's gpt-4o-mini at twice OpenAI's price; solar-pro priced only where it is served
    catalog["upstreams"] = {"az": {"gpt-4o-mini": {"input": "0.30", "cached_input": "0.15", "output": "1.20"}},
                            "cmp": {"solar-pro": {"input": "0.50", "output": "1.50", "max_output_tokens": 4096}}}
    (tmp / "prices.json").write_text(json.dumps(catalog))
    return {"UPSTREAMS_FILE": str(tmp / "upstreams.yaml"), "PRICE_CATALOG_PATH": str(tmp / "prices.json"),
            "EXTRA_MODELS": "", "UPSTREAM_TIMEOUT_SECONDS": "5", **KEYS}


@pytest.fixture(scope="module")
def routed(pg_url: str, fakes, tmp_path_factory) -> Iterator[ChatApiProcess]:
    tmp = tmp_path_factory.mktemp("routed")
    proc, api = start_chat_api(pg_url, fakes["oa"].openai_base, tmp, **write_config(tmp, fakes))
    yield api
    stop(proc)


def rows(api: ChatApiProcess, key_name: str, expected: int) -> list[tuple]:
    """The key's ledger rows, oldest first, once ``expected`` of them are written (the
    writer batches off the request path)."""
    deadline = time.monotonic() + 20
    while True:
        with psycopg.connect(api.pg_url) as conn:
            found = conn.execute(
                "SELECT s.upstream, s.model, s.cost_nanos, s.key_source, s.fallback_reason, s.outcome, s.upstream_attempts "
                "FROM spend_ledger s JOIN client_keys k ON k.id = s.client_key_id WHERE k.name = %s ORDER BY s.id",
                (key_name,)).fetchall()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def new_key(api: ChatApiProcess) -> tuple[str, str]:
    name = f"routing-{uuid.uuid4().hex[:8]}"
    return name, api.issue_key(name)


def chat(api: ChatApiProcess, key: str, model: str = "gpt-4o-mini", stream: bool = False,
         user_key: str | None = None, text: str = "라우팅 시험") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if user_key:
        headers["X-OpenAI-Api-Key"] = user_key
    return httpx.post(api.url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})


def test_models_lists_what_the_upstreams_serve_that_the_operator_allows(routed):
    _, key = new_key(routed)
    r = httpx.get(routed.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert sorted(m["id"] for m in r.json()["data"]) == ["gpt-4.1", "gpt-4o", "gpt-4o-mini", "solar-pro"]


def test_a_model_no_upstream_serves_is_unknown_and_nothing_is_sent(routed, fakes):
    _, key = new_key(routed)
    r = chat(routed, key, model="gpt-5")  # priced in the catalogue, served by nobody here
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_model"
    assert all(f.requests("") == [] for f in fakes.values())


def test_the_ledger_names_the_upstream_and_costs_at_its_price(routed, fakes):
    name, key = new_key(routed)
    assert chat(routed, key).json()["system_fingerprint"] == "fp_az"
    fakes["az"].behave(status=503)
    assert chat(routed, key).json()["system_fingerprint"] == "fp_oa"
    fakes["az"].normal()
    streamed = chat(routed, key, model="gpt-4.1", stream=True)
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    found = rows(routed, name, 3)
    # one row per request, charged once, however many upstreams it took
    assert [(r[0], r[5], r[6]) for r in found] == [("az", "ok", 1), ("oa", "ok", 2), ("oa", "ok", 1)]
    (az_cost, oa_cost) = found[0][2], found[1][2]
    assert az_cost == 2 * oa_cost > 0  # the same tokens, at Azure's (double) price
    assert found[0][1] == "gpt-4o-mini"  # Azure answered with its deployment's name; priced as the public one
    # the request log names the upstream that served each request too
    routed.flush_ledger()
    key_id = found_key_id(routed, name)
    items = httpx.get(routed.url + "/admin/v1/requests", params={"client_key_id": key_id},
                      headers={"Authorization": f"Bearer {routed.admin_token}"}).json()["items"]
    assert sorted(i["upstream"] for i in items) == ["az", "oa", "oa"]


def found_key_id(api: ChatApiProcess, key_name: str) -> str:
    with psycopg.connect(api.pg_url) as conn:
        return conn.execute("SELECT id FROM client_keys WHERE name = %s", (key_name,)).fetchone()[0]


def test_a_stream_cut_after_its_first_byte_stays_with_its_upstream_and_in_the_ledger(routed, fakes):
    name, key = new_key(routed)
    fakes["az"].behave(cut_stream_after=1)
    try:
        r = chat(routed, key, stream=True, text="하나 둘 셋 넷 다섯 여섯")
        body = r.text
    except httpx.HTTPError:  # the relay may end the response abruptly: that is the point
        body = ""
    assert "[DONE]" not in body
    assert fakes["oa"].requests() == []  # never switched after the first byte
    (row,) = rows(routed, name, 1)
    assert (row[0], row[5]) == ("az", "aborted")


def test_a_callers_key_goes_only_where_user_keys_are_accepted(routed, fakes):
    name, key = new_key(routed)
    r = chat(routed, key, user_key=USER_KEY)
    assert r.status_code == 200 and r.headers["x-llm-key-source"] == "user"
    assert r.json()["system_fingerprint"] == "fp_oa"  # not Azure, though it comes first
    # only the compatible server has solar-pro: the caller's key is not sent; the server key is
    r = chat(routed, key, model="solar-pro", user_key=USER_KEY)
    assert r.status_code == 200, r.text
    assert (r.headers["x-llm-key-source"], r.headers["x-llm-fallback-reason"]) == ("server", "user_key_rejected")
    assert [q["key"] for q in fakes["cmp"].requests()] == [KEYS["CMP_KEY"]]
    for fake in (fakes["cmp"], fakes["az"]):
        assert USER_KEY not in json.dumps(fake.requests(""))
    found = rows(routed, name, 3)
    # the refused own-key attempt keeps its own (error) row; it reached no upstream
    assert [(r[0], r[3], r[5]) for r in found] == [("oa", "user", "ok"), (None, "user", "error"),
                                                   ("cmp", "server", "ok")]
    # priced where it was served: 2 input tokens x 0.50 + 12 output x 1.50 per 1M = 19 µUSD
    assert found[2][2] == 19_000


def test_without_the_server_key_to_fall_back_on_a_refused_own_key_is_a_403(routed, fakes):
    done = subprocess.run([str(BIN / "llmctl"), "keys", "create", "--name", f"byok-{uuid.uuid4().hex[:6]}",
                           "--no-server-key"], env={**os.environ, **routed.env}, cwd=ROOT, capture_output=True,
                          text=True, check=True)
    key = done.stdout.strip().splitlines()[-1]
    r = chat(routed, key, model="solar-pro", user_key=USER_KEY)
    assert r.status_code == 403 and r.json()["error"]["code"] == "user_key_not_accepted"
    assert fakes["cmp"].requests("") == []


def test_metrics_per_upstream(routed, fakes):
    keys = [new_key(routed)[1] for _ in range(2)]
    fakes["az"].behave(status=503)
    # two clients fail there: an outage, not one client's requests (cooled down for everyone)
    assert [chat(routed, key).status_code for key in keys] == [200, 200]
    text = httpx.get(routed.url + "/metrics").text
    assert 'llm_gateway_upstream_requests_total{upstream="oa"}' in text
    assert 'llm_gateway_upstream_errors_total{reason="5xx",upstream="az"}' in text
    # the cooldown may be over by the time of the scrape; the failure count stays until a success
    assert 'llm_gateway_upstream_circuit_open{upstream="az"}' in text
    assert 'llm_gateway_upstream_circuit_open{upstream="oa"} 0.0' in text
    assert 'llm_gateway_upstream_consecutive_failures{upstream="oa"} 0.0' in text
    assert 'llm_gateway_upstream_consecutive_failures{upstream="az"} 0.0' not in text
    assert 'llm_gateway_upstream_attempt_seconds_count{upstream="oa"}' in text


def test_the_admin_api_shows_each_upstreams_circuit(routed, fakes):
    keys = [new_key(routed)[1] for _ in range(2)]
    fakes["az"].behave(status=503)
    assert [chat(routed, key).status_code for key in keys] == [200, 200]  # two clients: an outage
    r = httpx.get(routed.url + "/admin/v1/upstreams", headers={"Authorization": f"Bearer {routed.admin_token}"})
    items = {u["name"]: u for u in r.json()["items"]}
    assert [u["name"] for u in r.json()["items"]] == ["az", "cmp", "oa"]  # routing order: priority, name
    assert items["az"]["circuit"] in ("open", "closed") and items["az"]["consecutive_failures"] >= 1
    assert items["oa"]["circuit"] == "closed" and items["cmp"]["models"] == ["solar-pro"]
    assert (items["az"]["accepts_user_keys"], items["oa"]["accepts_user_keys"]) == (False, True)
    assert not any(v in r.text for v in KEYS.values())
    assert httpx.get(routed.url + "/admin/v1/upstreams").status_code == 401


def test_the_primary_stopped_costs_no_client_an_error(routed, fakes):
    _, key = new_key(routed)
    fakes["az"].stop()
    try:
        statuses = [chat(routed, key).status_code for _ in range(10)]
        assert statuses == [200] * 10
    finally:
        fakes["az"].start()


def run_chat_api(tmp: Path, pg_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DATABASE_URL": pg_url, "CHAT_API_PORT": str(free_port()), "DATA_DIR": str(tmp),
            "ADMIN_TOKEN": "admin-" + "a" * 40, "KEY_HASH_SECRET": "h" * 40, "EXTRA_MODELS": "", **env}
    return subprocess.run([str(BIN / "chat-api")], env=full, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("edit", "env", "expected"), [
    (("kind: openai_compatible", "kind: vllm"), {}, "upstreams[2] (cmp) kind: unknown kind 'vllm'"),
    (None, {"OA_KEY": ""}, "upstream oa: environment variable OA_KEY (its api_key_env) is not set"),
    (None, {"EXTRA_MODELS": "exaone-3.5"}, "EXTRA_MODELS exaone-3.5: served by no upstream"),
])
def test_chat_api_refuses_to_start_with_a_clear_line(pg_url, fakes, tmp_path, edit, env, expected):
    config = write_config(tmp_path, fakes)
    if edit:
        path = Path(config["UPSTREAMS_FILE"])
        path.write_text(path.read_text().replace(*edit))
    done = run_chat_api(tmp_path, pg_url, **{**config, **env})
    assert done.returncode == 2
    assert expected in done.stderr and done.stderr.count("\n") == 1
    assert not any(v in done.stderr + done.stdout for v in KEYS.values())


def test_llmctl_upstreams_lists_them_with_health(pg_url, fakes, tmp_path):
    config = write_config(tmp_path, fakes)
    Path(config["UPSTREAMS_FILE"]).write_text(upstreams_yaml(fakes, az_base=f"http://127.0.0.1:{free_port()}"))
    fakes["cmp"].behave(status=503)
    done = subprocess.run([str(BIN / "llmctl"), "upstreams", "--timeout", "3"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "DATABASE_URL": pg_url, **config}, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if not line.startswith(" ")}
    assert "unreachable" in lines["az"] and "gpt-4o-mini->kc-mini" in lines["az"]
    assert "ok (" in lines["oa"] and " yes " in lines["oa"]
    assert "HTTP 503" in lines["cmp"] and " no " in lines["cmp"]
    assert not any(v in done.stdout for v in KEYS.values())


def test_admission_holds_at_the_dearest_price_the_request_may_be_served_at(routed, fakes):
    """gpt-4o-mini goes to ``az`` first, at twice the catalogue's price: the hold must cover
    that price, or a key near its cap is admitted for half of what it is then charged."""
    name = f"routing-dear-{uuid.uuid4().hex[:8]}"
    key = routed.issue_key(name, daily_usd="0.002")
    body = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "x" * 40_000}]}
    # ~10,000 input tokens: $0.0015 at the catalogue's price (under the cap), $0.003 at az's (over it)
    fakes["az"].clear()
    fakes["oa"].clear()
    r = httpx.post(routed.url + "/v1/chat/completions", json=body, timeout=30, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 402, (r.status_code, r.text[:200], rows(routed, name, 1))
    assert fakes["az"].requests() == [] and fakes["oa"].requests() == []
