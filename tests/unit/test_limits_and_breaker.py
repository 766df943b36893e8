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


def test_each_opening_is_reported_once_with_its_scope():
    """What the operator's circuit alert hangs on: one client's circuit opening says
    "client", the key's shared circuit (several clients failing) says "key"; a refused call
    reports nothing new."""
    opened: list[str] = []
    breaker = CircuitBreaker(threshold=3, cooldown=30, min_clients=2, clock=Clock(), on_open=opened.append)
    fail(breaker, "sk-server", "a", 3)
    assert opened == ["client"]
    fail(breaker, "sk-server", "a", 2)  # refused by its open circuit: not sent, not reported
    assert opened == ["client"]
    fail(breaker, "sk-server", "b")
    assert opened == ["client", "key"]
    with pytest.raises(UpstreamError):
        breaker.admit("sk-server", "c")
    assert opened == ["client", "key"]


def _spend(quota, client: str, times: int) -> int:
    """How many of ``times`` single requests the quota lets through."""
    from domain.errors import RateLimited

    allowed = 0
    for _ in range(times):
        try:
            quota.take(client)
            allowed += 1
        except RateLimited:
            pass
    return allowed


def test_the_minute_allowance_cannot_be_doubled_across_a_minute_boundary():
    """A fixed window let 100 requests through at 0:59 and 100 more at 1:00; the sliding
    window counts the previous minute's use by its share still inside the last 60 s."""
    from chat_api.limits import MinuteQuota

    clock = Clock()
    clock.now = 60 * 100 + 59.0  # one second before a minute boundary
    quota = MinuteQuota(100, clock=clock)
    assert _spend(quota, "a", 150) == 100
    clock.now += 2  # one second into the next minute: 59/60 of the previous still counts
    assert _spend(quota, "a", 100) == 1
    clock.now += 30  # 31 s in: 29/60 of the previous minute's 100 (48.3) and the 1 above count
    assert _spend(quota, "a", 100) == 50
    clock.now += 60  # the next minute: 29/60 of those 51 (24.7) still count
    assert _spend(quota, "a", 150) == 75
    clock.now += 120  # a quiet minute later, the whole allowance again
    assert _spend(quota, "a", 150) == 100
    assert _spend(quota, "b", 150) == 100  # clients are counted apart


def test_a_refusal_says_when_the_request_fits_and_it_does_then():
    from chat_api.limits import MinuteQuota
    from domain.errors import RateLimited

    clock = Clock()
    clock.now = 60 * 200 + 30.0
    quota = MinuteQuota(10, "tokens", clock=clock)
    quota.take("a", 10)
    with pytest.raises(RateLimited) as refused:
        quota.take("a", 4)
    retry = refused.value.retry_after
    assert 0 < retry <= 60
    clock.now += retry - 0.5
    with pytest.raises(RateLimited):
        quota.take("a", 4)
    clock.now += 0.5
    quota.take("a", 4)  # fits exactly when it was told
    with pytest.raises(RateLimited) as too_big:
        quota.take("a", 11)  # more than a minute's allowance never fits
    assert too_big.value.retry_after == 60


def test_an_allowance_used_up_early_in_a_minute_is_waited_for_past_that_minute():
    """Four of four requests at 0:05: the fifth fits once the sliding window holds three of
    them, 15 s into the next minute, so the client is told 70 s, not the 55 s to the boundary
    (where all four would still count)."""
    from chat_api.limits import MinuteQuota
    from domain.errors import RateLimited

    clock = Clock()
    clock.now = 60 * 300 + 5.0
    quota = MinuteQuota(4, clock=clock)
    for _ in range(4):
        quota.take("a")
    with pytest.raises(RateLimited) as refused:
        quota.take("a")
    retry = refused.value.retry_after
    assert retry == pytest.approx(70)
    clock.now += 56  # past the boundary: the previous minute's four still weigh 59/60 of 4
    with pytest.raises(RateLimited):
        quota.take("a")
    clock.now = 60 * 300 + 5.0 + retry
    quota.take("a")
