"""The upstreams in force for this process, checked against the rest of the configuration.

Kept apart from ``bootstrap`` so ``chat-api`` and ``llmctl`` can check the configuration
before anything else starts, and report a problem in one line.
"""
from __future__ import annotations

from collections.abc import Callable

from chat_api.settings import ChatApiSettings
from domain.adapters.routing_provider import RoutingLlmProvider, build_routing_provider
from domain.adapters.upstreams import Upstream, UpstreamConfigError, check_served, load_upstreams
from domain.pricing import PriceTable


def extra_models(settings: ChatApiSettings) -> frozenset[str]:
    return frozenset(m.strip() for m in settings.extra_models.split(",") if m.strip())


def configured_upstreams(settings: ChatApiSettings, prices: PriceTable) -> list[Upstream]:
    """``UPSTREAMS_FILE``'s list (or the single ``default`` upstream), validated: every model
    the configuration names elsewhere is served, and every per-upstream price names an
    upstream that exists."""
    upstreams = load_upstreams(settings.upstreams_file, default_base_url=settings.openai_base_url,
                               default_api_key=settings.openai_api_key)
    check_served(upstreams, sorted(extra_models(settings)), "EXTRA_MODELS")
    names = {u.name for u in upstreams}
    unknown = sorted(set(prices.upstream_prices) - names)
    if unknown:
        raise UpstreamConfigError(f"price catalogue: prices for upstream {', '.join(unknown)}, "
                                  "which is not in the upstreams in force")
    return upstreams


def build_router(settings: ChatApiSettings, prices: PriceTable,
                 on_retry: Callable[[str], None] | None = None,
                 on_circuit_open: Callable[[str, str], None] | None = None) -> RoutingLlmProvider:
    """The routing provider over the upstreams in force (its ``served_models()`` narrows the
    models clients may ask for: see ``ModelCatalog``)."""
    upstreams = configured_upstreams(settings, prices)
    return build_routing_provider(upstreams, timeout=settings.upstream_timeout_seconds,
                                  max_retries=settings.upstream_max_retries, family_of=prices.family_of,
                                  on_retry=on_retry, max_connections=settings.upstream_max_connections,
                                  client_share=settings.upstream_client_share,
                                  breaker_threshold=settings.circuit_threshold,
                                  breaker_cooldown=settings.circuit_cooldown_seconds,
                                  breaker_min_clients=settings.circuit_min_clients,
                                  on_circuit_open=on_circuit_open)
