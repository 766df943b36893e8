"""Every string the console shows, in Korean (the default) and English."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LANGS = ("ko", "en")
LANG_KEY = "lang"

STRINGS: dict[str, tuple[str, str]] = {
    # shell
    "app.title": ("LLM Server 관리 콘솔", "LLM Server console"),
    "lang.label": ("언어", "Language"),
    "nav.overview": ("개요", "Overview"),
    "nav.conversations": ("대화", "Conversations"),
    "nav.spend": ("비용", "Spend"),
    "nav.keys": ("클라이언트 키", "Client keys"),
    "nav.host": ("호스트", "Host"),
    "nav.prices": ("가격표", "Prices"),
    "signout": ("로그아웃", "Sign out"),
    # sign-in
    "signin.title": ("관리자 로그인", "Operator sign-in"),
    "signin.password": ("비밀번호", "Password"),
    "signin.submit": ("로그인", "Sign in"),
    "signin.wrong": ("비밀번호가 올바르지 않습니다.", "Wrong password."),
    "signin.locked": ("로그인 시도가 너무 많습니다. {seconds}초 후에 다시 시도하세요.",
                      "Too many attempts. Try again in {seconds} s."),
    "signin.unconfigured": ("관리자 비밀번호가 설정되지 않았습니다 (ADMIN_PASSWORD).",
                            "No operator password is configured (ADMIN_PASSWORD)."),
    # errors
    "error.api": ("관리 API 호출에 실패했습니다: {code}", "The admin API call failed: {code}"),
    "error.unreachable": ("관리 API에 연결할 수 없습니다.", "The admin API cannot be reached."),
    "error.no_token": ("관리자 토큰이 없습니다 (ADMIN_TOKEN 또는 DATA_DIR/admin_token).",
                       "No admin token (ADMIN_TOKEN or DATA_DIR/admin_token)."),
    "error.monitor": ("모니터 서비스에 연결할 수 없습니다.", "The monitor cannot be reached."),
    # common
    "common.all": ("전체", "All"),
    "common.today": ("오늘", "Today"),
    "common.month": ("이번 달", "This month"),
    "common.requests": ("요청 수", "Requests"),
    "common.tokens": ("토큰", "Tokens"),
    "common.input_tokens": ("입력 토큰", "Input tokens"),
    "common.output_tokens": ("출력 토큰", "Output tokens"),
    "common.cost": ("비용", "Cost"),
    "common.cost_krw": ("비용 (원)", "Cost (KRW)"),
    "common.cost_usd": ("비용 (USD)", "Cost (USD)"),
    "common.model": ("모델", "Model"),
    "common.client": ("클라이언트", "Client"),
    "common.key_source": ("키 출처", "Key source"),
    "common.time_range": ("기간", "Time range"),
    "common.from": ("시작일", "From"),
    "common.to": ("종료일", "To"),
    "common.currency": ("통화", "Currency"),
    "common.none": ("데이터가 없습니다.", "No data."),
    "common.unlimited": ("무제한", "Unlimited"),
    "common.anonymous": ("익명", "Anonymous"),
    "common.dates_utc": ("일자는 UTC 기준입니다 (예산 기간과 동일).", "Days are UTC days (as budget periods)."),
    "range.24h": ("최근 24시간", "Last 24 hours"),
    "range.7d": ("최근 7일", "Last 7 days"),
    "range.30d": ("최근 30일", "Last 30 days"),
    "range.90d": ("최근 90일", "Last 90 days"),
    "range.all": ("전체 기간", "All time"),
    "range.custom": ("직접 지정", "Custom"),
    "source.server": ("서버 키", "Server key"),
    "source.user": ("사용자 키", "User key"),
    # overview
    "overview.title": ("개요", "Overview"),
    "overview.spend": ("비용", "Spend"),
    "overview.error_rate": ("오류율", "Error rate"),
    "overview.top_models": ("이번 달 상위 모델", "Top models this month"),
    "overview.top_clients": ("이번 달 상위 클라이언트", "Top clients this month"),
    "overview.chart": ("최근 30일 일별 비용 (원)", "Daily spend, last 30 days (KRW)"),
    "overview.rate": ("환율: 1 USD = ₩{rate}", "Rate: 1 USD = ₩{rate}"),
    # conversations
    "conv.title": ("대화", "Conversations"),
    "conv.search": ("내용 검색 (질문/답변)", "Search text (prompt/reply)"),
    "conv.total": ("총 {total:,}건 · {page}/{pages} 페이지", "{total:,} total · page {page}/{pages}"),
    "conv.page": ("페이지", "Page"),
    "conv.prev": ("이전", "Previous"),
    "conv.next": ("다음", "Next"),
    "conv.open": ("대화 열기", "Open conversation"),
    "conv.choose": ("대화를 선택하세요", "Choose a conversation"),
    "conv.external_id": ("대화 ID", "Conversation ID"),
    "conv.turns": ("턴 수", "Turns"),
    "conv.updated": ("최근 활동", "Last activity"),
    "conv.created": ("시작", "Started"),
    "conv.last_model": ("최근 모델", "Last model"),
    "conv.transcript": ("대화 내용: {name}", "Transcript: {name}"),
    "conv.system": ("시스템 프롬프트", "System prompt"),
    "conv.meta": ("{model} · 입력 {inp:,} (캐시 {cached:,}) / 출력 {out:,} 토큰 · {cost} · {latency} ms · {source}",
                  "{model} · {inp:,} in ({cached:,} cached) / {out:,} out tokens · {cost} · {latency} ms · {source}"),
    "conv.estimated": ("추정치", "estimated"),
    "conv.close": ("닫기", "Close"),
    # spend
    "spend.title": ("비용", "Spend"),
    "spend.group_by": ("집계 기준", "Group by"),
    "group.day": ("일자", "Day"),
    "group.model": ("모델", "Model"),
    "group.key_source": ("키 출처", "Key source"),
    "group.client_key": ("클라이언트 키", "Client key"),
    "spend.total": ("합계", "Total"),
    "spend.csv_prepare": ("원장 CSV 준비", "Prepare ledger CSV"),
    "spend.csv_download": ("CSV 다운로드", "Download CSV"),
    "spend.csv_ready": ("{rows:,}행 준비됨", "{rows:,} rows ready"),
    # keys
    "keys.title": ("클라이언트 키", "Client keys"),
    "keys.create": ("새 키 발급", "Issue a key"),
    "keys.name": ("이름", "Name"),
    "keys.daily": ("일일 한도 (USD, 비우면 무제한)", "Daily limit (USD, empty = unlimited)"),
    "keys.monthly": ("월간 한도 (USD, 비우면 무제한)", "Monthly limit (USD, empty = unlimited)"),
    "keys.server_key": ("서버 OpenAI 키 사용 허용", "May use the server's OpenAI key"),
    "keys.submit": ("발급", "Issue"),
    "keys.created": ("키가 발급되었습니다. 지금 복사하세요: 다시 표시되지 않습니다.",
                     "Key issued. Copy it now: it will not be shown again."),
    "keys.short_id": ("짧은 ID", "Short ID"),
    "keys.status": ("상태", "Status"),
    "keys.active": ("사용 중", "Active"),
    "keys.revoked": ("폐기됨", "Revoked"),
    "keys.created_at": ("발급일", "Issued"),
    "keys.spent_today": ("오늘 사용", "Spent today"),
    "keys.spent_month": ("이번 달 사용", "Spent this month"),
    "keys.daily_short": ("일일 한도", "Daily cap"),
    "keys.monthly_short": ("월간 한도", "Monthly cap"),
    "keys.utilisation": ("예산 사용률", "Budget utilisation"),
    "keys.util_line": ("{name} ({short}) · {period}: {spent} / {cap}", "{name} ({short}) · {period}: {spent} / {cap}"),
    "keys.manage": ("키 관리", "Manage a key"),
    "keys.select": ("키 선택", "Key"),
    "keys.set_budget": ("예산 저장", "Save budget"),
    "keys.budget_saved": ("예산을 저장했습니다.", "Budget saved."),
    "keys.revoke": ("키 폐기", "Revoke key"),
    "keys.revoke_confirm": ("폐기를 확인합니다 (되돌릴 수 없음)", "I confirm the revocation (cannot be undone)"),
    "keys.revoked_ok": ("키 {short}를 폐기했습니다.", "Key {short} revoked."),
    "keys.bad_amount": ("금액은 0 이상의 숫자여야 합니다.", "An amount must be a number ≥ 0."),
    "keys.none": ("발급된 키가 없습니다.", "No keys yet."),
    # host
    "host.title": ("호스트", "Host"),
    "host.cpu": ("CPU", "CPU"),
    "host.memory": ("메모리", "Memory"),
    "host.disk": ("디스크", "Disk"),
    "host.network": ("네트워크", "Network"),
    "host.services": ("서비스 상태", "Service health"),
    "host.service": ("서비스", "Service"),
    "host.ok": ("정상", "OK"),
    "host.down": ("이상", "Down"),
    "host.latency": ("응답 (ms)", "Latency (ms)"),
    "host.updated": ("{seconds}초마다 갱신 · 마지막 {time}", "Refreshes every {seconds} s · last {time}"),
    "host.sent": ("송신", "Sent"),
    "host.upstreams": ("업스트림 (AI 서버)", "Upstreams (AI servers)"),
    "host.upstream": ("업스트림", "Upstream"),
    "host.priority": ("우선순위", "Priority"),
    "host.weight": ("가중치", "Weight"),
    "host.cooling": ("대기 중 {seconds}초", "Cooling down {seconds} s"),
    "host.failures": ("연속 실패", "Consecutive failures"),
    "host.recv": ("수신", "Received"),
    # prices
    "prices.title": ("가격표", "Price catalogue"),
    "prices.version": ("버전: {version}", "Version: {version}"),
    "prices.unit": ("단위: 100만 토큰당 USD", "USD per 1M tokens"),
    "prices.input": ("입력", "Input"),
    "prices.cached": ("캐시 입력", "Cached input"),
    "prices.output": ("출력", "Output"),
    "prices.max_output": ("최대 출력 토큰", "Max output tokens"),
}


def lookup(key: str, lang: str, **values: Any) -> str:
    ko, en = STRINGS[key]
    text = en if lang == "en" else ko
    return text.format(**values) if values else text


def current_lang(session: Mapping[Any, Any] | None = None) -> str:
    if session is None:
        import streamlit as st

        session = st.session_state
    lang = session.get(LANG_KEY, "ko")
    return lang if lang in LANGS else "ko"


def t(key: str, **values: Any) -> str:
    """The string in the session's language (Korean unless the operator chose English)."""
    return lookup(key, current_lang(), **values)
