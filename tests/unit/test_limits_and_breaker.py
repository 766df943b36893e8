"""The output cap per model, the circuit breaker and the per-client share of upstream calls."""
from __future__ import annotations

import pytest

from domain.adapters.prices import load_price_catalog
from domain.errors import ErrorKind, InvalidInput, UpstreamBusy, UpstreamError
from domain.upstream_guard import CircuitBreaker, UpstreamShares
from domain.use_cases.chat_turn import _check_output_cap


def test_max_tokens_above_the_models_cap_is_refused():
    price = load_price_catalog().price_of("gpt-4o-mini")
    from dataclasses import dataclass

    @dataclass
    class Cmd:
        max_output_tokens: int | None

    _check_output_cap(Cmd(16_384), price)
    with pytest.raises(InvalidInput) as err:
        _check_output_cap(Cmd(16_385), price)
    assert err.value.code == "max_tokens_too_large"


class Clock:
    """A clock the test moves by hand (the breaker's cooldown is about time, not sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, key: str, client: str | None, times: int = 1) -> None:
    """``times`` calls that fail (those let through: an open circuit refuses the rest)."""
    for _ in range(times):
        try:
            admission = breaker.admit(key, client)
        except UpstreamError:
            continue
        breaker.record(admission, ok=False)


def is_open(breaker: CircuitBreaker, key: str, client: str | None) -> bool:
    try:
        admission = breaker.admit(key, client)
    except UpstreamError as err:
        assert err.code == "upstream_circuit_open" and err.upstream_status == 503 and err.retry_after
        return True
    breaker.record(admission, ok=None)
    return False


def test_one_clients_failures_open_only_its_own_circuit_on_the_shared_key():
    breaker = CircuitBreaker(threshold=5, cooldown=30, clock=Clock())
    fail(breaker, "sk-server", "client-a", times=50)  # e.g. fifty long generations that time out
    assert is_open(breaker, "sk-server", "client-a")
    assert not is_open(breaker, "sk-server", "client-b")
    assert not is_open(breaker, "sk-server", None)


def test_failures_from_several_clients_open_the_shared_circuit_for_everyone():
    breaker = CircuitBreaker(threshold=4, cooldown=30, min_clients=2, clock=Clock())
    fail(breaker, "sk-server", "client-a", times=3)
    assert not is_open(breaker, "sk-server", "client-c")
    fail(breaker, "sk-server", "client-b")
    assert is_open(breaker, "sk-server", "client-c")
    assert not is_open(breaker, "sk-user-own", "client-c")  # another upstream key is unaffected


def test_any_success_on_the_key_clears_the_shared_count():
    breaker = CircuitBreaker(threshold=3, cooldown=30, min_clients=2, clock=Clock())
    fail(breaker, "sk-server", "client-a", times=2)
    breaker.record(breaker.admit("sk-server", "client-c"), ok=True)
    fail(breaker, "sk-server", "client-b", times=2)
    assert not is_open(breaker, "sk-server", "client-d")


def test_a_4xx_is_an_answer_and_a_cancelled_call_no_verdict():
    breaker = CircuitBreaker(threshold=2, cooldown=30, min_clients=1, clock=Clock())
    for _ in range(5):
        breaker.record(breaker.admit("sk-server", "a"), ok=None)
    assert len(breaker) == 0
    fail(breaker, "sk-server", "a")
    breaker.record(breaker.admit("sk-server", "a"), ok=True)
    fail(breaker, "sk-server", "a")
    assert not is_open(breaker, "sk-server", "a")


def test_half_open_lets_exactly_one_probe_through_and_its_outcome_decides():
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=30, min_clients=2, clock=clock)
    fail(breaker, "sk-server", "a")
    fail(breaker, "sk-server", "b")
    assert is_open(breaker, "sk-server", "c")
    clock.now += 30
    probe = breaker.admit("sk-server", "c")
    for client in ("a", "b", "c", "d"):  # everyone else still fails fast while the probe is out
        assert is_open(breaker, "sk-server", client)
    breaker.record(probe, ok=False)  # the probe failed: open again, for a fresh cooldown
    assert is_open(breaker, "sk-server", "d")
    clock.now += 29
    assert is_open(breaker, "sk-server", "d")
    clock.now += 1
    probe = breaker.admit("sk-server", "d")
    breaker.record(probe, ok=None)  # the probe's caller went away: the next caller probes
    probe = breaker.admit("sk-server", "e")
    assert is_open(breaker, "sk-server", "f")
    breaker.record(probe, ok=True)
    for client in ("a", "b", "f"):
        assert not is_open(breaker, "sk-server", client)
    assert len(breaker) == 3  # only the own (closed) failure counts of a, b and c are left


def test_a_settled_call_is_not_counted_twice():
    breaker = CircuitBreaker(threshold=2, cooldown=30, min_clients=1, clock=Clock())
    admission = breaker.admit("sk", "a")
    breaker.record(admission, ok=False)
    breaker.record(admission, ok=False)
    assert not is_open(breaker, "sk", "a")


def test_breaker_state_is_bounded_and_never_keeps_a_key():
    breaker = CircuitBreaker(max_keys=100, clock=Clock())
    for i in range(1000):
        fail(breaker, f"sk-secret-value-{i}", f"client-{i}")
    assert len(breaker) <= 100
    assert "sk-secret" not in repr(breaker._circuits) and "client-" not in repr(breaker._circuits)


def test_a_client_gets_its_share_of_upstream_slots_and_no_more():
    shares = UpstreamShares(total=8, share=0.25)
    assert shares.per_client == 2
    held = [shares.acquire("a"), shares.acquire("a")]
    with pytest.raises(UpstreamBusy) as err:
        shares.acquire("a")
    assert err.value.code == "too_many_concurrent_requests" and err.value.retry_after
    assert err.value.kind is ErrorKind.RATE_LIMITED and err.value.upstream_status == 429
    assert not err.value.rejects_key  # never a reason to switch to the server key
    assert shares.acquire("b") == "b"  # another client is not held back by a's calls
    shares.release(held.pop())
    shares.acquire("a")
    assert shares.in_flight("a") == 2


def test_a_share_of_one_turns_the_rule_off():
    shares = UpstreamShares(total=4, share=1.0)
    for _ in range(100):
        shares.acquire("a")
