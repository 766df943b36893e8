"""The console's sign-in throttle through the real Streamlit app: a fresh browser page (a new
session) does not reset the count of failed guesses."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import admin_ui
from admin_ui import auth

ENTRY = Path(admin_ui.__file__).with_name("streamlit_app.py")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("ADMIN_TOKEN", "admin-token-" + "x" * 24)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHAT_API_URL", "http://127.0.0.1:9")  # never reached: nobody signs in
    monkeypatch.setenv("MONITOR_URL", "http://127.0.0.1:9")
    auth.THROTTLE.reset()  # the throttle is process-wide, like the Streamlit server's
    yield
    auth.THROTTLE.reset()


def guess(at: AppTest, password: str) -> str:
    at.text_input(key="signin_password").input(password)
    at.button(key="signin_submit").click().run()
    assert not at.exception, at.exception
    return at.error[0].value if at.error else ""


def fresh_page() -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=30)
    at.run()
    return at


def test_fresh_pages_every_few_guesses_do_not_reset_the_lockout(console: None) -> None:
    guesses = 0
    for _ in range(2):  # the attack from the report: a fresh page before the per-page lock
        at = fresh_page()
        for _ in range(2):
            assert guess(at, f"guess-{guesses}") == "비밀번호가 올바르지 않습니다."
            guesses += 1
    at = fresh_page()
    assert "너무 많습니다" in guess(at, f"guess-{guesses}")  # the fifth failure: the address waits
    at = fresh_page()
    assert "너무 많습니다" in guess(at, PASSWORD)  # even the right password, from a new page
    assert not at.metric
