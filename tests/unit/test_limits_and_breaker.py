"""The output cap per model and the per-key circuit breaker."""
from __future__ import annotations

import pytest

from domain.adapters.openai_provider import CircuitBreaker
from domain.adapters.prices import load_price_catalog
from domain.errors import InvalidInput, UpstreamError
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


def test_breaker_opens_per_key_and_closes_on_success():
    breaker = CircuitBreaker(threshold=3, cooldown=60)
    for _ in range(3):
        breaker.check("sk-user-broken")
        breaker.record("sk-user-broken", ok=False)
    with pytest.raises(UpstreamError) as err:
        breaker.check("sk-user-broken")
    assert err.value.code == "upstream_circuit_open" and err.value.retry_after == 60
    breaker.check("sk-server")  # another key is unaffected
    breaker.record("sk-user-broken", ok=True)
    breaker.check("sk-user-broken")


def test_breaker_never_keeps_the_key():
    breaker = CircuitBreaker()
    breaker.record("sk-secret-value-123", ok=False)
    assert "sk-secret" not in repr(breaker._state)


def test_breaker_reports_each_opening_once():
    opened: list[str] = []
    breaker = CircuitBreaker(threshold=3, cooldown=60, on_open=opened.append)
    for _ in range(2):
        breaker.record("sk-user-broken", ok=False)
    assert opened == []  # below the threshold: not open
    breaker.record("sk-user-broken", ok=False)
    assert opened == [CircuitBreaker.key_id("sk-user-broken")] and "sk-user" not in opened[0]
    with pytest.raises(UpstreamError):
        breaker.check("sk-user-broken")  # open: fails fast, no new report
    assert len(opened) == 1


def test_a_failed_probe_after_the_cooldown_reopens_and_reports_again():
    opened: list[str] = []
    breaker = CircuitBreaker(threshold=2, cooldown=0, on_open=opened.append)
    breaker.record("sk-a", ok=False)
    breaker.record("sk-a", ok=False)
    breaker.check("sk-a")  # cooldown over: one probe goes through
    breaker.record("sk-a", ok=False)
    assert len(opened) == 2
    breaker.record("sk-a", ok=True)  # a success closes it
    breaker.record("sk-a", ok=False)
    assert len(opened) == 2


def test_a_failing_report_never_fails_the_request():
    def broken(key_id: str) -> None:
        raise RuntimeError("webhook down")

    breaker = CircuitBreaker(threshold=1, on_open=broken)
    breaker.record("sk-a", ok=False)  # no exception
    with pytest.raises(UpstreamError):
        breaker.check("sk-a")
