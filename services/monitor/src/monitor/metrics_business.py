"""Business metrics (spend, tokens, requests, budgets, conversations) and the database's health,
read from the database at scrape time."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from domain.adapters.sql.read_models.business_metrics import BusinessFigures, read_business_figures
from domain.money import NANOS_PER_USD
from domain.periods import KST

log = logging.getLogger(__name__)

_TOKEN_KINDS = (("input", "input_tokens"), ("cached_input", "cached_input_tokens"),
                ("output", "output_tokens"), ("reasoning", "reasoning_tokens"))


def _usd_float(nanos: int) -> float:
    """Nano-USD as float USD: Prometheus samples are floats (display only, never summed back)."""
    return float(nanos) / NANOS_PER_USD


class BusinessCollector(Collector):
    """Reads ``BusinessFigures`` once per collection and turns them into metric families.

    Spend is the ledger's ``cost_nanos`` (what the request cost, whoever's key paid; unpriced
    requests add nothing and are counted in ``llm_unpriced_requests_total``). The ``*_total``
    families are all-time ledger sums, so they only grow while the ledger is append-only; a
    model leaving the top 50 moves its series into ``model="other"``, which Prometheus treats
    as a counter reset. When the database does not answer, ``llm_database_up`` is 0 and the
    business families are left out rather than reported stale.
    """

    def __init__(self, engine: Engine, usd_krw_rate: Decimal,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), tz: tzinfo = KST) -> None:
        self.engine = engine
        self._tz = tz
        self.usd_krw_rate = Decimal(usd_krw_rate)
        self._now = now

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                figures = read_business_figures(conn, self._now(), self._tz)
        except Exception as exc:  # any driver or SQL error means "the database is not usable"
            log.warning("business metrics unavailable: %s", (str(exc).splitlines() or [type(exc).__name__])[0])
            figures = None
        elapsed = time.perf_counter() - started
        yield GaugeMetricFamily("llm_database_up", "1 when the monitor's last database query succeeded.",
                                value=1 if figures is not None else 0)
        yield GaugeMetricFamily("llm_database_query_seconds",
                                "Duration of the monitor's last round of business-metric queries.", value=elapsed)
        if figures is not None:
            yield from self._families(figures)

    def _families(self, f: BusinessFigures) -> Iterable[Metric]:
        spend_usd = CounterMetricFamily("llm_spend_usd", "Priced cost of all requests in USD, all time.",
                                        labels=["model", "key_source"])
        spend_krw = CounterMetricFamily("llm_spend_krw", "Priced cost of all requests in KRW at the configured rate.",
                                        labels=["model", "key_source"])
        tokens = CounterMetricFamily("llm_tokens", "Tokens reported by the upstream, by kind (cached_input is "
                                     "part of input, reasoning part of output).",
                                     labels=["kind", "model", "key_source"])
        requests = CounterMetricFamily("llm_requests", "Requests recorded in the spend ledger.",
                                       labels=["model", "key_source", "outcome"])
        unpriced = CounterMetricFamily("llm_unpriced_requests", "Requests for models without a price.",
                                       labels=["model"])
        by_model_source: dict[tuple[str, str], int] = {}
        by_model_source_tokens: dict[tuple[str, str], list[int]] = {}
        by_model_unpriced: dict[str, int] = {}
        for g in f.groups:
            key = (g.model, g.key_source)
            by_model_source[key] = by_model_source.get(key, 0) + g.cost_nanos
            counts = by_model_source_tokens.setdefault(key, [0, 0, 0, 0])
            for i, (_, attr) in enumerate(_TOKEN_KINDS):
                counts[i] += getattr(g, attr)
            by_model_unpriced[g.model] = by_model_unpriced.get(g.model, 0) + g.unpriced
            requests.add_metric([g.model, g.key_source, g.outcome], g.requests)
        for (model, source), nanos in sorted(by_model_source.items()):
            spend_usd.add_metric([model, source], _usd_float(nanos))
            spend_krw.add_metric([model, source], float(Decimal(nanos) * self.usd_krw_rate / NANOS_PER_USD))
            for (kind, _), value in zip(_TOKEN_KINDS, by_model_source_tokens[(model, source)], strict=True):
                tokens.add_metric([kind, model, source], value)
        for model, count in sorted(by_model_unpriced.items()):
            unpriced.add_metric([model], count)
        window = GaugeMetricFamily("llm_spend_usd", "Priced cost of requests in USD in the current UTC day or month; "
                                   "key_source=server is what the server's key pays.", labels=["window", "key_source"])
        for source in ("server", "user"):  # both always present, so alerts see 0 rather than no data
            window.add_metric(["today", source], _usd_float(f.today_nanos.get(source, 0)))
            window.add_metric(["month", source], _usd_float(f.month_nanos.get(source, 0)))
        ratio = GaugeMetricFamily("llm_budget_utilisation_ratio",
                                  "Spent share of a client key's cap in the current UTC day or month "
                                  "(the 50 fullest keys per window).", labels=["client", "window"])
        for u in f.utilisation:
            ratio.add_metric([u.client, u.window], u.ratio)
        active = GaugeMetricFamily("llm_active_conversations", "Conversations with a turn in the last 15 minutes.",
                                   value=f.active_conversations)
        yield from (spend_usd, spend_krw, tokens, requests, unpriced, window, ratio, active)
