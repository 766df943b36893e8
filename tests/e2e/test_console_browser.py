"""The console in a real browser (headless Debian chromium driven by Playwright), through nginx:
sign in, read the Overview, open a conversation produced by real chat traffic. Screenshots go
to test-artifacts/screenshots/."""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (scripts/system-packages.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements/dev.txt)")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    with sync_api.sync_playwright() as p:
        # Playwright's own browser download is never used: the system chromium is.
        context = p.chromium.launch_persistent_context(
            profile, executable_path=path, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000}, locale="ko-KR", timezone_id="Asia/Seoul")
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _chat(stack: Any, prompt: str, session: str) -> dict[str, Any]:
    r = httpx.post(f"{stack.base_url}/api/v1/chat", headers=stack.auth(), timeout=60,
                   json={"request_id": session, "user_prompt": prompt, "system_prompt": "간결하게 답하세요.",
                         "model": "gpt-4o-mini", "max_tokens": 200})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_for_conversation(stack: Any, tag: str, turns: int, timeout: float = 30.0) -> dict[str, Any]:
    """The ledger writes off the request path: poll the admin API until the turns are stored."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{stack.chat_api_urls[0]}/admin/v1/conversations", params={"q": tag},
                      headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=10)
        r.raise_for_status()
        items = r.json()["items"]
        if items and items[0]["turn_count"] >= turns:
            return items[0]
        assert time.monotonic() < deadline, f"conversation {tag} not stored: {r.json()}"
        time.sleep(0.3)


def test_console_sign_in_overview_and_transcript(stack: Any, browser: Any) -> None:
    if not stack.admin_ui_url:
        pytest.skip("admin-ui is not installed in this environment")
    tag = uuid.uuid4().hex[:8]
    session = f"console-{tag}"
    prompt = f"콘솔 확인용 질문 {tag}: 서울의 봄 날씨는?"
    first = _chat(stack, prompt, session)
    _chat(stack, f"고마워요 {tag}", session)
    conv = _wait_for_conversation(stack, tag, turns=2)
    SHOTS.mkdir(parents=True, exist_ok=True)

    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{stack.base_url}/admin/")
    password = page.get_by_label("비밀번호")
    password.wait_for()
    page.screenshot(path=str(SHOTS / "console-00-sign-in.png"), full_page=True)
    password.fill("wrong-" + tag)
    page.get_by_role("button", name="로그인").click()
    page.get_by_text("비밀번호가 올바르지 않습니다.").wait_for()
    assert "₩" not in page.inner_text("body")

    page.get_by_label("비밀번호").fill(stack.admin_password)
    page.get_by_role("button", name="로그인").click()
    page.get_by_role("heading", name="개요").wait_for()
    page.get_by_text("이번 달 상위 모델").wait_for()
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
    page.wait_for_timeout(2000)  # let the chart and tables finish drawing
    body = page.inner_text("body")
    assert "₩" in body and "오늘" in body
    assert stack.admin_token not in page.content() and stack.admin_password not in page.content()
    page.screenshot(path=str(SHOTS / "console-01-overview.png"), full_page=True)

    page.get_by_role("link", name="대화").click()
    page.get_by_role("heading", name="대화").wait_for()
    search = page.get_by_label("내용 검색 (질문/답변)")
    search.fill(tag)
    search.press("Enter")
    page.get_by_text("총 1건").wait_for()
    opener = page.locator('[data-testid="stSelectbox"]').filter(has_text="대화 열기")
    opener.click()
    page.get_by_role("option").filter(has_text=session).click()
    page.get_by_text(prompt, exact=True).wait_for()
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    assert prompt in body and first["output_text"].strip()[:20] in body
    assert "₩" in body and "gpt-4o-mini" in body and "서버 키" in body
    assert conv["external_id"] == session
    page.screenshot(path=str(SHOTS / "console-02-conversation.png"), full_page=True)
    page.close()
