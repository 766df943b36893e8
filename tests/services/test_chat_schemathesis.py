"""Property-based run over the OpenAPI schema: no input produces a 5xx."""
from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def api_schema(chat_api):
    return schemathesis.openapi.from_url(chat_api.url + "/openapi.json")


def _code(response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else body.get("code") if isinstance(body, dict) else None


def test_no_server_errors(api_schema, chat_api, client_key):
    failures = []
    for operation in api_schema.get_all_operations():
        op = operation.ok()
        if op.path.startswith("/admin"):
            continue

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {client_key}"}
            if isinstance(case.body, dict):
                case.body.setdefault("model", "gpt-4o-mini")
            response = case.call(base_url=chat_api.url, timeout=30)
            # The one 5xx allowed: this session's shared process may have had its circuit opened
            # on purpose by earlier tests (model fake-500). The stateful run
            # (test_stateful_fuzz.py) has a process of its own and allows none.
            if response.status_code >= 500 and _code(response) != "upstream_circuit_open":
                failures.append((op.method, op.path, response.status_code, response.text[:200]))

        run()
    assert not failures, failures
    assert httpx.get(chat_api.url + "/healthz").status_code == 200
