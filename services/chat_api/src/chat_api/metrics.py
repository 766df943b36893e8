"""Traffic metrics of one chat_api process (business totals come from the monitor, which
reads the ledger and so is exact across replicas)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.adapters.routing_provider import UpstreamStatus

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class GatewayMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series double the scrape size for no use here
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llm_gateway_requests", "HTTP requests answered, by route, status and model",
                                ["route", "status", "model"], registry=r)
        self.duration = Histogram("llm_gateway_request_duration_seconds", "Total time to answer a request",
                                  ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream = Histogram("llm_gateway_upstream_duration_seconds", "Time spent waiting for the upstream",
                                  ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("llm_gateway_time_to_first_token_seconds", "Time to the first streamed byte",
                              ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram("llm_gateway_overhead_seconds", "Time added by the gateway (total minus upstream)",
                                  ["route"], buckets=_OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter("llm_gateway_tokens", "Tokens reported by the upstream", ["kind", "model"], registry=r)
        self.cost = Counter("llm_gateway_cost_usd", "Cost of answered requests in USD", ["model", "key_source"],
                            registry=r)
        self.budget_rejections = Counter("llm_gateway_budget_rejections", "Requests refused before the upstream",
                                         ["reason"], registry=r)
        self.pii = Counter("llm_gateway_pii_values", "Personal data found in requests, by kind and by what was "
                           "done (masked, blocked)", ["kind", "action"], registry=r)
        self.retries = Counter("llm_gateway_upstream_retries", "Upstream retries, by reason", ["reason"], registry=r)
        self.ledger_queue = Gauge("llm_gateway_ledger_queue_depth", "Ledger records waiting to be written",
                                  registry=r)
        self.ledger_spool = Gauge("llm_gateway_ledger_spooled_records", "Ledger records spooled to disk",
                                  registry=r)
        self.ledger_writer_up = Gauge("llm_gateway_ledger_writer_up", "1 while the ledger writer thread runs",
                                      registry=r)
        self.ledger_writer_restarts = Counter("llm_gateway_ledger_writer_restarts",
                                              "Ledger writer threads restarted after dying", registry=r)
        self.ledger_set_aside = Gauge("llm_gateway_ledger_set_aside_records",
                                      "Ledger records set aside (refused or unreadable) in the spool file", registry=r)
        self.auth_cache = Gauge("llm_gateway_auth_cache_entries", "Entries in the client-key cache", registry=r)
        self.open_streams = Gauge("llm_gateway_open_streams", "Streams being relayed now", registry=r)
        self.upstream_requests = Counter("llm_gateway_upstream_requests", "Attempts sent to each upstream",
                                         ["upstream"], registry=r)
        self.upstream_errors = Counter("llm_gateway_upstream_errors",
                                       "Failed attempts per upstream, by reason (connection, timeout, circuit_open, "
                                       "429, 5xx, stream_error, bad_response, client_error)", ["upstream", "reason"], registry=r)
        self.upstream_latency = Histogram("llm_gateway_upstream_attempt_seconds",
                                          "Time to an upstream's answer (streams: to the first event), per attempt",
                                          ["upstream"], buckets=_LATENCY_BUCKETS, registry=r)

        # Children resolved once per label values (``labels`` takes a lock and checks and
        # converts its values on every call: ~10 calls per request). Every label value here is
        # bounded (routes, HTTP statuses, the catalogue's families, key sources, upstream names
        # from the configuration), so these stay as small as the series themselves.
        self._answers: dict[tuple[str, int, str], tuple[Counter, Histogram, Histogram, Histogram]] = {}
        self._usage: dict[tuple[str, str], tuple[Counter, Counter, Counter, Counter, Counter]] = {}
        self._attempts: dict[str, tuple[Counter, Histogram]] = {}

    def answered(self, route: str, status: int, model: str) -> tuple[Counter, Histogram, Histogram, Histogram]:
        """(requests, duration, upstream, overhead) children for an answer on ``route`` with
        ``status`` for the model family ``model``."""
        key = (route, status, model)
        children = self._answers.get(key)
        if children is None:
            children = self._answers[key] = (self.requests.labels(route, str(status), model),
                                             self.duration.labels(route), self.upstream.labels(route),
                                             self.overhead.labels(route))
        return children

    def usage(self, model: str, key_source: str) -> tuple[Counter, Counter, Counter, Counter, Counter]:
        """(input, cached input, output, reasoning tokens, cost) children for the model family
        ``model`` paid by ``key_source``."""
        key = (model, key_source)
        children = self._usage.get(key)
        if children is None:
            children = self._usage[key] = (
                self.tokens.labels("input", model), self.tokens.labels("cached_input", model),
                self.tokens.labels("output", model), self.tokens.labels("reasoning", model),
                self.cost.labels(model, key_source))
        return children

    def attempt(self, upstream: str, outcome: str, seconds: float) -> None:
        """The router's ``UpstreamObserver``: one attempt at one upstream."""
        children = self._attempts.get(upstream)
        if children is None:
            children = self._attempts[upstream] = (self.upstream_requests.labels(upstream),
                                                   self.upstream_latency.labels(upstream))
        children[0].inc()
        if outcome == "ok":
            children[1].observe(seconds)
        else:
            self.upstream_errors.labels(upstream, outcome).inc()

    def watch_upstreams(self, status: Callable[[], Sequence[UpstreamStatus]]) -> None:
        """Circuit state per upstream, read at scrape time."""
        self.registry.register(_UpstreamHealthCollector(status))


class _UpstreamHealthCollector(Collector):
    def __init__(self, status: Callable[[], Sequence[UpstreamStatus]]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        circuit = GaugeMetricFamily("llm_gateway_upstream_circuit_open",
                                    "1 while the upstream is cooling down after failures (requests go elsewhere)",
                                    labels=["upstream"])
        failures = GaugeMetricFamily("llm_gateway_upstream_consecutive_failures",
                                     "Failures of the upstream since its last success", labels=["upstream"])
        for s in self._status():
            circuit.add_metric([s.name], 1.0 if s.circuit_open else 0.0)
            failures.add_metric([s.name], float(s.consecutive_failures))
        yield circuit
        yield failures
