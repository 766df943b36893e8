"""RoutingLlmProvider: one ``LlmProvider`` in front of several upstreams.

Each upstream has its own ``OpenAiLlmProvider`` (so its own connection pool and circuit
breaker); an Azure upstream has one per deployment, built on the SDK's ``AsyncAzureOpenAI``
so the deployment URL, ``api-version`` and ``api-key`` header follow the SDK's rules.

The rules of one request (DESIGN.md "Upstream routing"):

* candidates are the upstreams serving the model, lowest ``priority`` number first, in a
  weighted random order among equal priorities (the first pick is upstream *i* with
  probability weight_i / sum of weights); upstreams cooling down go after the others;
* a connection failure, timeout, open circuit, 429 or 5xx *before the first byte* moves the
  request to the next candidate; a stream that has started never switches;
* a failed upstream cools down (a 429 for that model only, for its ``Retry-After``; other
  failures for the whole upstream, growing with consecutive failures up to a bound); when
  every candidate failed, the round is retried after a backoff, ``max_retries`` times;
* one client's failures never cool an upstream down for the others (DESIGN.md "Isolation
  and hostile input"; the circuit breaker's rule, ``domain.upstream_guard``): a timeout, 5xx
  or open circuit cools it down for that client only, and for everyone once failures since
  its last success come from ``min_clients`` distinct clients. What no request can cause
  cools it down for everyone at once: a connection that could not be made (refused, name not
  resolved: nothing was sent), and the server key's 429 or exhausted quota there (the key
  is everyone's). A caller's own key's 429 or quota is that caller's alone. Once everyone's
  cooldown is on, any failure there (a probe's) renews it; any success ends it;
* the server's key is never a real key here: the key policy is given ``server_key`` (an
  opaque token), and each upstream then gets its own key. Any other key is the caller's and
  goes only to upstreams that accept user keys (an ``openai_compatible`` upstream never sees
  a caller's OpenAI key unless the operator says so).
"""
from __future__ import annotations

import asyncio
import collections
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import httpx2
import openai
from aiohttp.abc import AbstractResolver

from domain.adapters.openai_provider import OpenAiLlmProvider
from domain.adapters.upstreams import Upstream, UpstreamKind, served_models
from domain.errors import (
    InvalidInput,
    UpstreamBadResponse,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UserKeyNotAccepted,
    no_api_key,
)
from domain.ports import StreamData, StreamDone, UpstreamReply, UpstreamRequest
from domain.upstream_guard import ANONYMOUS, UpstreamShares

T = TypeVar("T")
_REMEMBERED_RESPONSES = 10_000
_REMEMBERED_CLIENTS = 10_000  # per upstream, clients with a cooldown of their own (least recent dropped)


class UpstreamObserver(Protocol):
    """Told about every attempt: ``outcome`` is ``ok``, ``client_error`` (the upstream answered
    4xx: alive, but the request was refused) or the failure that moved the request on
    (``connection``, ``timeout``, ``circuit_open``, ``429``, ``quota``, ``5xx``, ``stream_error``), or
    ``bad_response`` (an unreadable answer: not retried elsewhere, it may have been billed)."""

    def attempt(self, upstream: str, outcome: str, seconds: float) -> None: ...


class _AzureDeploymentProvider(OpenAiLlmProvider):
    """An Azure deployment: the key goes in ``api-key`` (the SDK's client does the URL)."""

    @staticmethod
    def _headers(api_key: str) -> Mapping[str, str]:
        return {"api-key": api_key}


@dataclass
class _Health:
    failures: int = 0
    open_until: float = 0.0
    model_open_until: dict[str, float] = field(default_factory=dict)
    probing: bool = False  # after a cooldown, one request at a time finds out whether it is back
    # everyone's health only: distinct clients that failed there since its last success (up to
    # min_clients), the evidence that it is the upstream and not one client's requests
    failed_clients: set[str] = field(default_factory=set)

    def cooling(self, upstream_model: str, now: float) -> bool:
        return (self.open_until > now or self.model_open_until.get(upstream_model, 0.0) > now
                or (self.failures > 0 and self.probing))


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """One upstream's state, for ``/metrics``, the console and ``llmctl upstreams``."""

    name: str
    kind: str
    priority: int
    weight: float
    accepts_user_keys: bool
    models: tuple[str, ...] | None
    circuit_open: bool
    cooldown_seconds: float
    consecutive_failures: int


class RoutedUpstream:
    """An upstream with its providers (one, or one per Azure deployment)."""

    def __init__(self, config: Upstream, providers: dict[str, OpenAiLlmProvider]) -> None:
        self.config = config
        self._providers = providers
        self._any = next(iter(providers.values()))
        self.health = _Health()  # everyone's
        self.client_health: collections.OrderedDict[str, _Health] = collections.OrderedDict()  # one client's

    def healths(self, client: str) -> tuple[_Health, ...]:
        """What a request of ``client`` is routed by: everyone's health and its own, if any."""
        own = self.client_health.get(client) if self.client_health else None
        return (self.health,) if own is None else (self.health, own)

    def own_health(self, client: str) -> _Health:
        health = self.client_health.get(client)
        if health is None:
            health = self.client_health[client] = _Health()
            while len(self.client_health) > _REMEMBERED_CLIENTS:
                self.client_health.popitem(last=False)
        self.client_health.move_to_end(client)
        return health

    @property
    def name(self) -> str:
        return self.config.name

    def provider_for(self, upstream_model: str | None) -> OpenAiLlmProvider:
        return self._providers.get(upstream_model or "", self._any)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def _failover_reason(error: UpstreamError) -> str | None:
    """Why this failure should move the request on, or None if it should reach the caller."""
    if isinstance(error, UpstreamBusy):  # the client's own share, not the upstream's health
        return None
    if isinstance(error, UpstreamBadResponse):  # it answered (unreadably) and may have billed the call
        return None
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    if error.code == "upstream_circuit_open":
        return "circuit_open"
    if error.code == "upstream_unreachable":
        return "connection"
    if error.code == "upstream_key_refused":  # a refusal (of the server's key), not an outage
        return None
    status = error.upstream_status or 0
    if status == 429:
        # the server's key is out of quota there: another upstream may still answer
        return "quota" if error.upstream_code == "insufficient_quota" else "429"
    if status >= 500 or status in (408, 409):
        return "5xx" if status >= 500 else str(status)
    return None


def _server_side(error: UpstreamError, server: bool) -> UpstreamError:
    """A refusal of the server's own key (401/403) is the operator's to read, not the
    caller's: OpenAI's message quotes the refused key (masked but for its start and end) and
    its 401 would tell the SDK that the caller's credentials failed. The caller gets
    ``upstream_key_refused`` (no body, nothing quoted). Not failed over, as before: the
    request itself reached an upstream that is up."""
    if not server or error.upstream_status not in (401, 403):
        return error
    refused = UpstreamError("upstream_key_refused", upstream_status=502)
    refused.upstream, refused.attempts = error.upstream, error.attempts
    return refused


def _user_key_not_accepted(model: str) -> UserKeyNotAccepted:
    return UserKeyNotAccepted("user_key_not_accepted", upstream_status=403, model=model)


def _unreachable() -> UpstreamError:
    return UpstreamError("upstream_unreachable", upstream_status=502)


class RoutingLlmProvider:
    def __init__(self, upstreams: Sequence[RoutedUpstream], *, max_retries: int = 2, backoff_base: float = 0.25,
                 max_backoff: float = 8.0, cooldown_base: float = 1.0, max_cooldown: float = 10.0,
                 max_retry_after: float = 300.0, family_of: Callable[[str], str | None] | None = None,
                 on_retry: Callable[[str], None] | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, shares: UpstreamShares | None = None,
                 min_clients: int = 2) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self.upstreams = list(upstreams)
        self._max_retries, self._backoff_base, self._max_backoff = max_retries, backoff_base, max_backoff
        self._cooldown_base, self._max_cooldown, self._max_retry_after = cooldown_base, max_cooldown, max_retry_after
        self._family_of = family_of or (lambda model: None)
        self._on_retry = on_retry or (lambda reason: None)
        self._rng = rng or random.Random()
        self._clock = clock
        self._min_clients = max(1, min_clients)
        self.observer: UpstreamObserver | None = None
        # One client's share of upstream calls in flight, over all upstreams (the providers'
        # own shares are off): a client over it is refused before any upstream is tried, so
        # its flood neither fails over nor marks an upstream unhealthy.
        self.shares = shares or UpstreamShares(1, 1.0)
        # Which upstream created a response id, so GET/cancel by id go back to it.
        self._response_home: collections.OrderedDict[str, str] = collections.OrderedDict()
        # The key policy's "server key": an opaque token that stands for each upstream's own key.
        has_server_keys = any(u.config.api_key for u in self.upstreams)
        self.server_key: str | None = ("routed-server-key-" + secrets.token_urlsafe(24)) if has_server_keys else None

    # -- what the upstreams serve ---------------------------------------------------------
    def served_models(self) -> frozenset[str] | None:
        """Public model names served by some upstream; None when one serves any model."""
        return served_models(u.config for u in self.upstreams)

    def status(self) -> list[UpstreamStatus]:
        now = self._clock()
        return [UpstreamStatus(u.name, u.config.kind.value, u.config.priority, u.config.weight,
                               u.config.accepts_user_keys,
                               None if u.config.models is None else tuple(sorted(u.config.models)),
                               u.health.open_until > now, max(0.0, u.health.open_until - now), u.health.failures)
                for u in self.upstreams]

    # -- choosing -------------------------------------------------------------------------
    def _is_server_key(self, api_key: str) -> bool:
        return self.server_key is not None and secrets.compare_digest(api_key.encode(), self.server_key.encode())

    def _key_for(self, upstream: RoutedUpstream, api_key: str, server: bool) -> str | None:
        return upstream.config.api_key if server else api_key

    def _candidates(self, model: str, server: bool) -> list[tuple[RoutedUpstream, str]]:
        family = self._family_of(model)
        serving = [(u, m) for u in self.upstreams
                   if (m := u.config.upstream_model(model, family)) is not None]
        if not serving:
            raise InvalidInput("unknown_model", field="model", model=model)
        usable = [(u, m) for u, m in serving if (u.config.api_key if server else u.config.accepts_user_keys)]
        if not usable:
            raise no_api_key() if server else _user_key_not_accepted(model)
        return usable

    def _order(self, candidates: list[tuple[RoutedUpstream, str]], client: str) -> list[tuple[RoutedUpstream, str]]:
        """Priority ascending; weighted random among equals (Efraimidis-Spirakis keys); those
        cooling down (as a whole, or for this model; for everyone, or for this client) after
        the rest, in the same order."""
        if len(candidates) == 1:  # the usual single upstream: nothing to choose
            return candidates
        now = self._clock()
        keyed = sorted(candidates, key=lambda c: (c[0].config.priority,
                                                  -(self._rng.random() ** (1.0 / c[0].config.weight))))

        def cooling(c: tuple[RoutedUpstream, str]) -> bool:
            return any(h.cooling(c[1], now) for h in c[0].healths(client))

        return [c for c in keyed if not cooling(c)] + [c for c in keyed if cooling(c)]

    # -- health ---------------------------------------------------------------------------
    def _failed(self, upstream: RoutedUpstream, upstream_model: str, reason: str, error: UpstreamError,
                client: str, server: bool) -> None:
        """Cools the upstream down for ``client``, and for everyone when the failure cannot be
        the client's doing or several clients failed there (the rule in the module's doc)."""
        now = self._clock()
        own, everyone = upstream.own_health(client), upstream.health
        if reason in ("429", "quota"):  # about the key: the server's is everyone's, a caller's is its own
            for_everyone = server
        else:
            for_everyone = error.connect_failed or everyone.failures > 0
            if not for_everyone:
                if len(everyone.failed_clients) < self._min_clients:
                    everyone.failed_clients.add(client)
                for_everyone = len(everyone.failed_clients) >= self._min_clients
        for health in (own, everyone) if for_everyone else (own,):
            self._cool(health, upstream_model, reason, error, now)

    def _cool(self, health: _Health, upstream_model: str, reason: str, error: UpstreamError, now: float) -> None:
        if reason == "429":
            wait = error.retry_after if error.retry_after is not None else self._cooldown_base
            health.model_open_until[upstream_model] = now + min(max(wait, 0.0), self._max_retry_after)
            return
        health.failures += 1
        if error.retry_after is not None and reason != "circuit_open":
            wait = min(max(error.retry_after, 0.0), self._max_retry_after)
        else:
            wait = min(self._max_cooldown, self._cooldown_base * 2 ** (health.failures - 1))
        health.open_until = max(health.open_until, now + wait)

    @staticmethod
    def _succeeded(upstream: RoutedUpstream, upstream_model: str, client: str) -> None:
        """It answered: everyone's cooldown ends, and this client's. Another client's own
        stays: its requests may be what fails there."""
        health = upstream.health
        if health.failures or health.open_until:
            health.failures, health.open_until = 0, 0.0
        if health.failed_clients:
            health.failed_clients.clear()
        if health.model_open_until:
            health.model_open_until.pop(upstream_model, None)
        if upstream.client_health:
            upstream.client_health.pop(client, None)

    def _observe(self, upstream: str, outcome: str, started: float) -> None:
        if self.observer is not None:
            self.observer.attempt(upstream, outcome, time.perf_counter() - started)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff)
        return min(self._max_backoff, self._backoff_base * 2.0**attempt) * (0.5 + random.random() / 2)

    # -- one routed call ------------------------------------------------------------------
    async def _route(self, request: UpstreamRequest, api_key: str,
                     call: Callable[[OpenAiLlmProvider, UpstreamRequest, str], Awaitable[T]]
                     ) -> tuple[T, RoutedUpstream, int]:
        """The first answer of the candidates in order, with the upstream that gave it and
        the number of calls it took."""
        server = self._is_server_key(api_key)
        candidates = self._candidates(request.model, server)
        client = request.client or ANONYMOUS  # anonymous callers cannot be told apart: one client
        last: UpstreamError | None = None
        attempts = 0
        spent: set[str] = set()  # timed out, circuit open or out of quota: not tried in later rounds
        # A client retrying itself (``retries`` False) gets one round: each upstream at most
        # once, no backoff, so its own retry count still bounds the calls to any one upstream.
        rounds = self._max_retries + 1 if request.retries else 1
        for round_ in range(rounds):
            order = [c for c in self._order(candidates, client) if c[0].name not in spent]
            if not order:
                break
            for upstream, upstream_model in order:
                if last is not None:
                    self._on_retry(last.code if last.upstream_status is None else _retry_label(last))
                key = self._key_for(upstream, api_key, server)
                assert key is not None  # _candidates keeps only upstreams with a key for this mode
                started = time.perf_counter()
                # Half-open: a failed upstream whose cooldown is over gets one request at a
                # time (the others go elsewhere), so a hanging one delays one caller, not all.
                probes = [h for h in upstream.healths(client) if h.failures > 0 and not h.probing]
                for health in probes:
                    health.probing = True
                attempts += 1
                try:
                    result = await call(upstream.provider_for(upstream_model),
                                        replace(request, model=upstream_model), key)
                except UpstreamError as raised:
                    raised.upstream, raised.attempts = upstream.name, attempts
                    error = _server_side(raised, server)
                    reason = _failover_reason(error)
                    if isinstance(error, UpstreamBadResponse):
                        self._observe(upstream.name, "bad_response", started)
                        raise error from None
                    if reason is None or (not server and error.rejects_key):
                        # The upstream is alive and refused this request (or the caller's key).
                        self._succeeded(upstream, upstream_model, client)
                        self._observe(upstream.name, "client_error", started)
                        raise error from None
                    self._observe(upstream.name, reason, started)
                    self._failed(upstream, upstream_model, reason, error, client, server)
                    if reason in ("timeout", "circuit_open", "quota"):
                        spent.add(upstream.name)  # trying it again within this request cannot help
                    last = error
                    continue
                finally:
                    for health in probes:
                        health.probing = False
                self._succeeded(upstream, upstream_model, client)
                self._observe(upstream.name, "ok", started)
                return result, upstream, attempts
            if round_ < rounds - 1 and last is not None:
                await asyncio.sleep(self._delay(round_, last.retry_after))
        assert last is not None
        raise last

    def _remember(self, response_id: str | None, upstream: RoutedUpstream) -> None:
        if not response_id or len(self.upstreams) == 1:
            return
        self._response_home[response_id] = upstream.name
        self._response_home.move_to_end(response_id)
        while len(self._response_home) > _REMEMBERED_RESPONSES:
            self._response_home.popitem(last=False)

    # -- the LlmProvider port -------------------------------------------------------------
    def _public(self, model: str, request: UpstreamRequest, upstream: RoutedUpstream) -> str:
        """An upstream that answers with the deployment's name is recorded under the public
        name (the ledger and metrics speak of models, not of one operator's deployments)."""
        deployment = upstream.config.upstream_model(request.model, self._family_of(request.model))
        return request.model if deployment != request.model and model == deployment else model

    async def complete(self, request: UpstreamRequest, api_key: str) -> UpstreamReply:
        slot = self.shares.acquire(request.client)
        try:
            reply, upstream, attempts = await self._route(request, api_key,
                                                          lambda provider, req, key: provider.complete(req, key))
        finally:
            self.shares.release(slot)
        self._remember(str(reply.body.get("id") or "") or None, upstream)
        return replace(reply, upstream=upstream.name, model=self._public(reply.model, request, upstream),
                       attempts=attempts)

    async def stream(self, request: UpstreamRequest, api_key: str) -> AsyncIterator[StreamData | StreamDone]:
        async def open_stream(provider: OpenAiLlmProvider, req: UpstreamRequest, key: str) -> tuple[
                AsyncIterator[StreamData | StreamDone], StreamData | StreamDone]:
            events = provider.stream(req, key)
            try:
                return events, await anext(events)
            except StopAsyncIteration:
                return events, StreamDone(None, req.model)
            except httpx2.TransportError:
                # The upstream answered its headers, then broke off: still before our first
                # byte, so the stream may go elsewhere. (A body the provider reads as broken
                # is an UpstreamBadResponse: it may have been billed, so it stays there.)
                await events.aclose()  # type: ignore[attr-defined]
                raise _unreachable() from None
            except openai.APIError:
                await events.aclose()  # type: ignore[attr-defined]
                raise _unreachable() from None

        slot = self.shares.acquire(request.client)  # held until the stream ends
        try:
            (events, first), upstream, attempts = await self._route(request, api_key, open_stream)
        except BaseException:
            self.shares.release(slot)
            raise
        started = time.perf_counter()
        try:
            event = replace(first, upstream=upstream.name, attempts=attempts) if isinstance(first, StreamData) else first
            while True:
                if isinstance(event, StreamDone):
                    self._remember(event.response_id, upstream)
                    yield replace(event, upstream=upstream.name, attempts=attempts,
                                  model=self._public(event.model, request, upstream))
                    return
                yield event
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
        except (httpx2.TransportError, openai.APIError, UpstreamError):
            self._observe(upstream.name, "stream_error", started)
            raise
        finally:
            self.shares.release(slot)
            await events.aclose()  # type: ignore[attr-defined]

    async def _by_id(self, response_id: str, api_key: str,
                     call: Callable[[OpenAiLlmProvider, str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Calls about a stored response (get, cancel, delete, input items) go to the upstream
        that created it when this process knows it, else to each eligible upstream in priority
        order until one knows the id."""
        server = self._is_server_key(api_key)
        home = self._response_home.get(response_id)
        eligible = [u for u in sorted(self.upstreams, key=lambda u: (u.name != home, u.config.priority))
                    if (u.config.api_key if server else u.config.accepts_user_keys)]
        if not eligible:
            raise no_api_key() if server else UserKeyNotAccepted("user_key_not_accepted", reason="stored_response",
                                                                 upstream_status=403)
        last: UpstreamError | None = None
        for upstream in eligible:
            key = self._key_for(upstream, api_key, server)
            assert key is not None
            try:
                return await call(upstream.provider_for(None), key)
            except UpstreamError as raised:
                raised.upstream = upstream.name
                error = _server_side(raised, server)
                if error.upstream_status != 404 and _failover_reason(error) is None:
                    raise error from None
                last = error
        assert last is not None
        raise last

    async def get_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        return await self._by_id(response_id, api_key, lambda p, key: p.get_response(response_id, key))

    async def cancel_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        return await self._by_id(response_id, api_key, lambda p, key: p.cancel_response(response_id, key))

    async def delete_response(self, response_id: str, api_key: str) -> dict[str, Any]:
        deleted = await self._by_id(response_id, api_key, lambda p, key: p.delete_response(response_id, key))
        self._response_home.pop(response_id, None)
        return deleted

    async def response_input_items(self, response_id: str, api_key: str,
                                   query: Mapping[str, str]) -> dict[str, Any]:
        return await self._by_id(response_id, api_key,
                                 lambda p, key: p.response_input_items(response_id, key, query))

    async def list_models(self, api_key: str) -> list[str]:
        """The public names the upstreams serve: an upstream's configured ``models`` as they
        are, and for one serving any model what it lists itself (asked with its own key, or
        the caller's where it accepts callers' keys). One upstream that cannot be asked is
        left out; only when none answers is its error raised."""
        server = self._is_server_key(api_key)
        names: set[str] = set()
        last: UpstreamError | None = None
        answered = False
        for upstream in self.upstreams:
            if upstream.config.models is not None:
                names.update(upstream.config.models)
                answered = True
                continue
            key = self._key_for(upstream, api_key, server) if (
                upstream.config.api_key if server else upstream.config.accepts_user_keys) else None
            if key is None:
                continue
            try:
                names.update(await upstream.provider_for(None).list_models(key))
                answered = True
            except UpstreamError as error:
                error.upstream = upstream.name
                last = _server_side(error, server)
        if not answered:
            raise last if last is not None else (no_api_key() if server else _user_key_not_accepted("*"))
        return sorted(names)

    async def aclose(self) -> None:
        for upstream in self.upstreams:
            await upstream.aclose()


def _retry_label(error: UpstreamError) -> str:
    """The retries metric's reason label, as before routing: the status, or 'connection'."""
    if error.code == "upstream_unreachable":
        return "connection"
    return str(error.upstream_status)


def build_routing_provider(upstreams: Sequence[Upstream], *, timeout: float = 60.0, connect_timeout: float = 5.0,
                           max_retries: int = 2, max_connections: int = 200, client_share: float = 1.0,
                           breaker_threshold: int = 5, breaker_cooldown: float = 30.0, breaker_min_clients: int = 2,
                           family_of: Callable[[str], str | None] | None = None,
                           on_retry: Callable[[str], None] | None = None,
                           on_circuit_open: Callable[[str, str], None] | None = None, max_cooldown: float = 10.0,
                           resolver: AbstractResolver | None = None, **routing: Any) -> RoutingLlmProvider:
    """One provider per upstream (per deployment for Azure); retries live in the router, so
    each provider makes a single attempt and the next one may go elsewhere. ``routing`` passes
    on to ``RoutingLlmProvider`` (cooldowns, backoff, a clock or random source for tests).

    Each provider keeps its circuit breaker (per client and shared, ``domain.upstream_guard``),
    paused no longer than the router's longest cooldown, so a primary that is back gets
    traffic back within that bound. A client's share of calls in flight is counted once, by
    the router, over all upstreams. ``resolver`` (aiohttp's; the system's by default) looks up
    the names of the upstreams spoken to directly, bounded by ``connect_timeout`` like the
    connect itself (Azure's SDK client bounds its lookup the same way)."""
    guard: dict[str, Any] = {"max_connections": max_connections, "client_share": 1.0,
                             "breaker_threshold": breaker_threshold,
                             "breaker_cooldown": min(breaker_cooldown, max_cooldown),
                             "breaker_min_clients": breaker_min_clients}
    routed = []
    for u in upstreams:
        # A circuit opening is reported with the name of the upstream it opened for.
        guard["on_circuit_open"] = (None if on_circuit_open is None
                                    else lambda scope, name=u.name: on_circuit_open(name, scope))
        providers: dict[str, OpenAiLlmProvider] = {}
        if u.kind is UpstreamKind.AZURE:
            http_client = openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))
            for deployment in sorted(set((u.models or {}).values())):
                client = openai.AsyncAzureOpenAI(
                    azure_endpoint=u.base_url, azure_deployment=deployment, api_version=u.api_version,
                    api_key=u.api_key or "unused-placeholder", max_retries=0,
                    timeout=httpx2.Timeout(timeout, connect=connect_timeout), http_client=http_client)
                providers[deployment] = _AzureDeploymentProvider(api_base=u.base_url, max_retries=0, client=client,
                                                                 **guard)
        else:
            providers[""] = OpenAiLlmProvider(api_base=u.base_url, timeout=timeout, connect_timeout=connect_timeout,
                                              max_retries=0, resolver=resolver, **guard)
        routed.append(RoutedUpstream(u, providers))
    return RoutingLlmProvider(routed, max_retries=max_retries, family_of=family_of, on_retry=on_retry,
                              max_cooldown=max_cooldown, shares=UpstreamShares(max_connections, client_share),
                              min_clients=breaker_min_clients, **routing)


async def probe_upstream(upstream: Upstream, timeout: float = 5.0) -> str:
    """One ``GET /models`` with the upstream's own key, for ``llmctl upstreams``: ``ok (N ms)``,
    ``HTTP <status>``, ``timeout``, ``unreachable`` or ``no key`` (never the key itself)."""
    if not upstream.api_key:
        return "no key"
    client: openai.AsyncOpenAI
    if upstream.kind is UpstreamKind.AZURE:
        client = openai.AsyncAzureOpenAI(azure_endpoint=upstream.base_url, api_version=upstream.api_version,
                                         api_key=upstream.api_key, max_retries=0, timeout=timeout)
    else:
        client = openai.AsyncOpenAI(base_url=upstream.base_url, api_key=upstream.api_key, max_retries=0,
                                    timeout=timeout)
    started = time.perf_counter()
    try:
        await client.get("/models", cast_to=httpx2.Response)
    except openai.APIStatusError as exc:
        return f"HTTP {exc.status_code}"
    except openai.APITimeoutError:
        return "timeout"
    except openai.APIConnectionError:
        return "unreachable"
    finally:
        await client.close()
    return f"ok ({(time.perf_counter() - started) * 1000:.0f} ms)"
