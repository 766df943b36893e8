"""The console's sign-in throttle, shared by every session: how many guesses it allows."""
from __future__ import annotations

import pytest

from admin_ui import auth
from admin_ui.auth import SignInThrottle, sign_in

PASSWORD = "the-operator-password-1"


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)


def guesses_allowed(throttle: SignInThrottle, seconds: float, addresses: int = 1) -> int:
    """An attacker who opens a fresh page (a fresh session) for every guess and guesses at
    the earliest moment allowed, rotating over ``addresses`` addresses."""
    now, guesses, turn = 0.0, 0, 0
    while now < seconds:
        address = f"203.0.113.{turn % addresses}"
        turn += 1
        wait = throttle.wait(address, now)
        if wait > 0:
            now += min(wait, 0.5) if addresses > 1 else wait
            continue
        assert sign_in({}, f"guess-{guesses}", now=now, address=address, throttle=throttle) == "wrong"
        guesses += 1
    return guesses


def test_guesses_per_minute_from_one_address():
    throttle = SignInThrottle()
    first_minute = guesses_allowed(throttle, 60)
    first_hour = guesses_allowed(SignInThrottle(), 3600)
    print(f"\none address, fresh page per guess: {first_minute} guesses in the first minute, "
          f"{first_hour} in the first hour")
    assert first_minute <= 10
    assert first_hour <= 25


def test_guesses_per_minute_from_many_addresses():
    throttle = SignInThrottle()
    first_minute = guesses_allowed(throttle, 60, addresses=1000)
    first_hour = guesses_allowed(SignInThrottle(), 3600, addresses=1000)
    print(f"\n1000 addresses: {first_minute} guesses in the first minute, {first_hour} in the first hour "
          f"({(first_hour - 30) / 59:.1f} per minute after the burst)")
    assert first_minute <= 30 + 6
    assert first_hour <= 30 + 6 * 60 + 1


def test_a_fresh_session_does_not_reset_the_addresses_count():
    throttle = SignInThrottle(free_tries=5)
    for i in range(5):
        assert sign_in({}, "wrong", now=100.0 + i, address="a", throttle=throttle) == "wrong"
    fresh: dict = {}  # a new browser page: a new, empty session
    assert sign_in(fresh, PASSWORD, now=105.0, address="a", throttle=throttle) == "locked"
    assert auth.remaining_lock(fresh, now=105.0) > 0 and not auth.is_signed_in(fresh)
    # another address is not held back by a's failures
    assert sign_in({}, PASSWORD, now=105.0, address="b", throttle=throttle) == "ok"


def test_a_refused_try_does_not_check_the_password_or_count():
    throttle = SignInThrottle(free_tries=2)
    assert sign_in({}, "wrong", now=0.0, address="a", throttle=throttle) == "wrong"
    assert sign_in({}, "wrong", now=0.5, address="a", throttle=throttle) == "wrong"
    wait = throttle.wait("a", 0.5)
    assert wait == 2.0
    for _ in range(10):  # refused while waiting: the wait does not grow
        assert sign_in({}, PASSWORD, now=0.6, address="a", throttle=throttle) == "locked"
    assert throttle.wait("a", 0.6) == pytest.approx(wait - 0.1)
    assert sign_in({}, PASSWORD, now=0.5 + wait, address="a", throttle=throttle) == "ok"
    assert throttle.wait("a", 0.5 + wait) == 0  # a success clears the address


def test_the_global_bucket_holds_every_address_back_and_refills():
    throttle = SignInThrottle(global_burst=3, global_per_minute=6)
    for i in range(3):
        sign_in({}, "wrong", now=0.0, address=f"x{i}", throttle=throttle)
    assert sign_in({}, PASSWORD, now=1.0, address="operator", throttle=throttle) == "locked"
    assert sign_in({}, PASSWORD, now=10.0, address="operator", throttle=throttle) == "ok"


def test_an_address_is_forgotten_after_a_quiet_while_and_state_is_bounded():
    throttle = SignInThrottle(free_tries=1, forget_after=900, max_addresses=50)
    sign_in({}, "wrong", now=0.0, address="a", throttle=throttle)
    sign_in({}, "wrong", now=0.0, address="a", throttle=throttle)
    assert throttle.wait("a", 1.0) > 0
    assert throttle.wait("a", 901.0) == 0
    for i in range(500):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", 1000.0 + i)
    assert len(throttle._addresses) <= 50


@pytest.mark.parametrize(("peer", "allowed", "trusted"), [
    (None, "127.0.0.1", True),  # the local nginx (Streamlit reports loopback as None)
    ("127.0.0.1", "127.0.0.1", True),
    ("172.18.0.5", "*", True),  # compose: the private network
    ("172.18.0.5", "172.18.0.0/16", True),
    ("198.51.100.7", "127.0.0.1", False),  # a browser straight at admin_ui cannot pick its address
    ("not-an-ip", "127.0.0.1", False),
])
def test_x_real_ip_is_believed_only_from_a_trusted_proxy(monkeypatch, peer, allowed, trusted):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", allowed)
    assert auth._trusted_proxy(peer) is trusted
