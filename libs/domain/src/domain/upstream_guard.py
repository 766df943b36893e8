"""Guarding a shared upstream from its own clients: the circuit breaker and the per-client
share of upstream connections.

The server's OpenAI key is shared by every client, so both rules are about fairness: what one
client does (long generations that time out, requests the upstream chokes on, a flood of
parallel calls) must never cost another client its answers.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from domain.errors import UpstreamBusy, UpstreamError

ANONYMOUS = "(anonymous)"  # callers without a key are one client: they cannot be told apart


def _digest(*parts: str) -> str:
    # never keep a key itself, only a short digest of it
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:24]


def circuit_open(retry_after: float) -> UpstreamError:
    return UpstreamError("upstream_circuit_open", upstream_status=503, retry_after=max(1.0, round(retry_after, 1)))


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    clients: set[str] = field(default_factory=set)  # distinct clients (digests) among ``failures``
    opened_at: float | None = None
    probing: bool = False  # half-open and the one probe is out


@dataclass(slots=True)
class Admission:
    """One admitted upstream call; ``CircuitBreaker.record`` settles it exactly once."""

    shared: str  # digest of the upstream key
    own: str  # digest of (upstream key, client)
    probes: tuple[str, ...] = ()
    settled: bool = False


class CircuitBreaker:
    """Fails fast while an upstream key keeps failing, without letting one client's failures
    stop anyone else.

    The rule, per upstream key (a user's own key, or the server key every client shares):

    - A *failure* is a 5xx, a timeout or a connection error. A 4xx is an answer: the upstream
      is up (it counts as a success).
    - Each client has its own circuit on the key: ``threshold`` consecutive failures of that
      client open it for ``cooldown`` seconds, and only that client fails fast.
    - The key's shared circuit opens only when the failures since the key's last success (of
      anyone) number at least ``threshold`` **and** come from at least ``min_clients``
      distinct clients. A real outage fails everybody and opens it quickly; one client's
      long generations or poisoned requests, however many, never do.
    - Any success on the key closes the shared circuit and clears the count.
    - After ``cooldown`` a circuit is half-open: exactly one call (the probe) goes through,
      every other call fails fast until the probe ends; success closes the circuit, failure
      reopens it for a fresh cooldown, and a probe that ends without an answer (cancelled by
      its client) frees the probe for the next caller.

    State is kept only while something fails, keyed by digests, bounded to ``max_keys``
    circuits (least recently failing dropped first).
    """

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, *, min_clients: int = 2,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[str], None] | None = None) -> None:
        self._threshold, self._cooldown, self._min_clients = threshold, cooldown, max(1, min_clients)
        self._max, self._clock = max_keys, clock
        self._on_open = on_open or (lambda scope: None)
        self._circuits: OrderedDict[str, _Circuit] = OrderedDict()

    def __len__(self) -> int:
        return len(self._circuits)

    def admit(self, api_key: str, client: str | None) -> Admission:
        """Lets the call through (possibly as a half-open circuit's probe) or raises
        ``upstream_circuit_open`` (503, with the seconds until the next probe)."""
        who = client or ANONYMOUS
        admission = Admission(_digest(api_key), _digest(api_key, who))
        if not self._circuits:  # the usual case: nothing failing
            return admission
        probes = []
        for name in (admission.own, admission.shared):
            circuit = self._circuits.get(name)
            if circuit is None or circuit.opened_at is None:
                continue
            left = self._cooldown - (self._clock() - circuit.opened_at)
            if left > 0:
                raise circuit_open(left)
            if circuit.probing:
                raise circuit_open(1.0)
            probes.append(name)
        for name in probes:  # claimed only once every circuit has let the call through
            self._circuits[name].probing = True
        admission.probes = tuple(probes)
        return admission

    def record(self, admission: Admission, ok: bool | None) -> None:
        """Settles a call: True (an answer, 4xx included), False (5xx, timeout, connection
        error), None (no verdict: the caller went away first)."""
        if admission.settled:
            return
        admission.settled = True
        if ok is None:
            for name in admission.probes:
                if (circuit := self._circuits.get(name)) is not None:
                    circuit.probing = False
            return
        if ok:
            if self._circuits:
                self._circuits.pop(admission.own, None)
                self._circuits.pop(admission.shared, None)
            return
        now = self._clock()
        own = self._failed(admission.own, admission)
        if (own.opened_at is None and own.failures >= self._threshold) or admission.own in admission.probes:
            self._open(own, now, "client")
        shared = self._failed(admission.shared, admission)
        if admission.shared in admission.probes or (
                shared.opened_at is None and shared.failures >= self._threshold
                and len(shared.clients) >= self._min_clients):
            self._open(shared, now, "key")

    def _failed(self, name: str, admission: Admission) -> _Circuit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = _Circuit()
            while len(self._circuits) > self._max:
                self._circuits.popitem(last=False)
        self._circuits.move_to_end(name)
        circuit.failures += 1
        if len(circuit.clients) < self._min_clients:  # only "how many, up to min_clients" matters
            circuit.clients.add(admission.own)
        return circuit

    def _open(self, circuit: _Circuit, now: float, scope: str) -> None:
        circuit.opened_at, circuit.probing = now, False
        self._on_open(scope)


class UpstreamShares:
    """Each client's share of the upstream connections: at most ``per_client`` calls of one
    client in flight at once on this replica (streams count until they end), so one client
    cannot take every connection of the pool and starve the others. ``per_client`` is
    ``ceil(total * share)``, at least 1; a share of 1 or more turns the rule off. Over its
    share a client gets 429 ``too_many_concurrent_requests`` (``UpstreamBusy``) at once,
    rather than waiting in front of everyone else; nothing is sent upstream."""

    def __init__(self, total: int, share: float) -> None:
        self.per_client = max(1, math.ceil(total * share)) if share < 1 else total
        self._enabled = share < 1
        self._in_flight: dict[str, int] = {}

    def in_flight(self, client: str | None) -> int:
        return self._in_flight.get(client or ANONYMOUS, 0)

    def acquire(self, client: str | None) -> str:
        who = client or ANONYMOUS
        if not self._enabled:
            return who
        used = self._in_flight.get(who, 0)
        if used >= self.per_client:
            raise UpstreamBusy("too_many_concurrent_requests", upstream_status=429, retry_after=1,
                               max=self.per_client)
        self._in_flight[who] = used + 1
        return who

    def release(self, who: str) -> None:
        if not self._enabled:
            return
        left = self._in_flight.get(who, 1) - 1
        if left > 0:
            self._in_flight[who] = left
        else:
            self._in_flight.pop(who, None)
