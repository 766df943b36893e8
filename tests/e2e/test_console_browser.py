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


# -- every page, in Korean, on real data ------------------------------------------------------------

SHOTS_ENV = "CONSOLE_SCREENSHOTS_DIR"
# (file, path under /admin/, the page's Korean title, text that says the page has its data)
PAGES = [
    ("01-overview", "", "개요", "최근 24시간"),  # the default page has no path of its own
    ("02-requests", "requests", "요청 로그", "총 "),
    ("03-request-detail", "requests?rid={rid}", "요청 로그", "대화 턴"),
    ("04-keys", "keys", "클라이언트 키", "사용률 높은 순으로 정렬됨"),
    ("05-key-page", "keys?key={key}", "클라이언트 키", "이번 달 개인정보 감지"),
    ("06-spend", "spend", "비용", "합계"),
    ("07-conversations", "conversations", "대화", "총 "),
    ("08-conversation", "conversations", "대화", None),  # opened below
    ("09-host", "host", "호스트", "업스트림 (AI 서버)"),
    ("10-prices", "prices", "가격표", "EXTRA_MODELS"),
    ("11-audit", "audit", "감사 로그·알림", None),
]


@pytest.fixture
def shots_dir(tmp_path: Any) -> Any:
    """Where the screenshots go: $CONSOLE_SCREENSHOTS_DIR when set (to keep them), else the
    test's temporary directory."""
    import os
    from pathlib import Path

    wanted = os.environ.get(SHOTS_ENV)
    path = Path(wanted) if wanted else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _settled(page: Any, title: str, marker: str | None) -> None:
    """Waits until the page's script has run: its title, its data, no running indicator."""
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    if marker:
        page.get_by_text(marker).first.wait_for()
    # Streamlit marks its root with the script's state: the run has finished
    page.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'")
    # charts draw after the script's last message
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                           ".every(c => c.querySelector('canvas, svg'))")


def _shoot(page: Any, path: Any) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so the
    viewport is first made as tall as that block's content."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"], section.main')]"
                           ".map(e => e.scrollHeight), document.body.scrollHeight)")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 40, 12_000))})
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
                           ".every(c => c.querySelector('canvas, svg'))")
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def _no_failure_on(page: Any, name: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: an exception box"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{name}: {errors.all_inner_texts()}"


def test_every_page_in_korean_on_a_scripted_mix(stack: Any, browser: Any, shots_dir: Any) -> None:
    """Sign in through nginx after a scripted mix (200, streams, 400, 402, 429, an own-key
    fallback, personal data) and keep a PNG of every page: each shows its Korean title, its
    data, and no exception or error box."""
    from tests.support.request_mix import PII_PROMPT, create_keys, run_mix

    if not stack.admin_ui_url:
        pytest.skip("admin-ui is not installed in this environment")
    tag = uuid.uuid4().hex[:6]
    admin = httpx.Client(base_url=stack.chat_api_urls[0], timeout=30,
                         headers={"Authorization": f"Bearer {stack.admin_token}", "X-Admin-Actor": "console"})
    keys = create_keys(admin, tag)
    mix = run_mix(stack.base_url, keys, tag)
    assert sorted(set(mix.statuses)) == [200, 400, 402, 429]
    admin.put(f"/admin/v1/keys/{keys.fallback[0]}/pii-policy", json={"pii_policy": "block"}).raise_for_status()
    # a key created under block (a changed policy reaches the other replica only after its
    # auth cache's few seconds): its request with personal data is refused, nothing sent
    strict = admin.post("/admin/v1/keys", json={"name": f"외부업체-{tag}", "pii_policy": "block"}).json()["key"]
    blocked = httpx.post(f"{stack.base_url}/v1/chat/completions", headers=stack.auth(strict), timeout=60,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PII_PROMPT}]})
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_detected", blocked.text
    stack.flush_ledgers()
    fallback = admin.get("/admin/v1/requests", params={"client_key_id": keys.fallback[0], "status": "2xx"}).json()
    rid = fallback["items"][0]["request_id"]
    assert fallback["items"][0]["fallback_reason"]
    admin.close()

    browser.clear_cookies()  # signed out, whatever an earlier test of the module did
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{stack.base_url}/admin/")
    page.get_by_label("비밀번호").fill(stack.admin_password)
    page.get_by_role("button", name="로그인").click()
    _settled(page, "개요", "최근 24시간")
    written = []
    for name, path, title, marker in PAGES:
        if name == "08-conversation":  # the list from the step before: the turn with personal data, opened
            search = page.get_by_label("내용 검색 (질문/답변)")
            search.fill("배송 언제")
            search.press("Enter")
            page.get_by_text("총 1건").wait_for()
            opener = page.locator('[data-testid="stSelectbox"]').filter(has_text="대화 열기")
            opener.click()
            page.get_by_role("option").filter(has_text=f"mix-{tag}").first.click()
            page.get_by_text("대화 내용:").first.wait_for()
        else:
            # a deep link in the same signed-in browser: the session cookie carries over
            page.goto(f"{stack.base_url}/admin/{path.format(rid=rid, key=keys.busy[0])}")
        _settled(page, title, marker)
        _no_failure_on(page, name)
        body = page.inner_text("body")
        assert stack.admin_token not in page.content() and stack.admin_password not in page.content()
        if name == "01-overview":
            assert "첫 토큰 p50" in body and "전화번호" in body and "정상 (닫힘)" in body and "default" in body
            assert "차단된 요청에서 감지" in body
        if name == "03-request-detail":
            # the fields are a (canvas) dataframe; the stored turn is text
            assert f"환불 규정 알려주세요 {tag}" in body and page.url.endswith(f"rid={rid}")
        if name == "05-key-page":
            assert f"키 상세: 고객지원팀-{tag}" in body and "이메일" in body and "전화번호" in body
        if name == "08-conversation":  # stored masked: the placeholders, never the values
            assert "[전화번호1]" in body and "[이메일1]" in body and "010-2345-6789" not in body
        if name == "11-audit":  # the grid's cells are in the DOM for screen readers
            page.locator('[data-testid^="glide-cell"]', has_text="개인정보 정책 변경").first.wait_for(state="attached")
        target = shots_dir / f"console-{name}.png"
        _shoot(page, target)
        written.append(target)
    page.close()
    assert all(p.stat().st_size > 10_000 for p in written)
    print("screenshots:", *written, sep="\n  ")
