"""The gateway's metric children are resolved once per label values and count on the very
series ``labels`` names: what a scrape reads is unchanged."""
from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chat_api.metrics import GatewayMetrics


def _samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_cached_children_count_on_the_labelled_series() -> None:
    m = GatewayMetrics()
    for status in (200, 200, 429):
        requests, duration, upstream, overhead = m.answered("/v1/chat/completions", status, "gpt-4o-mini")
        requests.inc()
        duration.observe(0.01)
    inp, cached, out, reasoning, cost = m.usage("gpt-4o-mini", "server")
    inp.inc(10)
    m.usage("gpt-4o-mini", "server")[2].inc(5)
    cost.inc(0.25)
    m.attempt("primary", "ok", 0.02)
    m.attempt("primary", "5xx", 0.02)
    m.attempt("primary", "ok", 0.03)
    got = _samples(m)
    assert got[("llm_gateway_requests_total", (("model", "gpt-4o-mini"), ("route", "/v1/chat/completions"),
                                                ("status", "200")))] == 2
    assert got[("llm_gateway_requests_total", (("model", "gpt-4o-mini"), ("route", "/v1/chat/completions"),
                                                ("status", "429")))] == 1
    assert got[("llm_gateway_request_duration_seconds_count", (("route", "/v1/chat/completions"),))] == 3
    assert got[("llm_gateway_tokens_total", (("kind", "input"), ("model", "gpt-4o-mini")))] == 10
    assert got[("llm_gateway_tokens_total", (("kind", "output"), ("model", "gpt-4o-mini")))] == 5
    assert got[("llm_gateway_cost_usd_total", (("key_source", "server"), ("model", "gpt-4o-mini")))] == 0.25
    assert got[("llm_gateway_upstream_requests_total", (("upstream", "primary"),))] == 3
    assert got[("llm_gateway_upstream_attempt_seconds_count", (("upstream", "primary"),))] == 2
    assert got[("llm_gateway_upstream_errors_total", (("reason", "5xx"), ("upstream", "primary")))] == 1
    # one entry per distinct label values, the same children each time
    assert m.answered("/v1/chat/completions", 200, "gpt-4o-mini") is m.answered("/v1/chat/completions", 200,
                                                                                "gpt-4o-mini")
    assert len(m._answers) == 2 and len(m._usage) == 1 and len(m._attempts) == 1
