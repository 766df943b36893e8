"""Streamlit pieces several pages share: calling the API with errors shown safely, and the
time-range picker."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import streamlit as st

from admin_ui import api, exports, formatting
from admin_ui.i18n import t

T = TypeVar("T")
RANGES = ("24h", "7d", "30d", "90d", "all", "custom")
_RANGE_DELTAS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
                 "90d": timedelta(days=90)}


def admin() -> api.AdminApi:
    return api.admin_api()


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Runs an API call; on failure shows what went wrong (status and code, never a secret)
    and returns None."""
    try:
        return fn(*args, **kwargs)
    except api.ApiError as exc:
        if exc.code == "no_admin_token":
            st.error(t("error.no_token"))
        elif exc.code == "unreachable":
            st.error(t("error.unreachable"))
        else:
            st.error(t("error.api", code=exc.code))
        return None


def quiet(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """An optional panel's call: None on failure, without an error box (the page's main
    call already says when the admin API cannot be reached)."""
    try:
        return fn(*args, **kwargs)
    except api.ApiError:
        return None


PII_KINDS = ("rrn", "phone", "card", "business_no", "passport", "driver_license", "account", "email")
PII_POLICIES = (None, "off", "mask", "block")


def cap(limit_usd: object) -> str:
    """A budget cap for a table cell: '$5.00', or '무제한' (not a blank or 'None')."""
    return t("common.unlimited") if limit_usd is None else formatting.usd(limit_usd)


def expiry_of(day: date | None) -> str | None:
    """A "valid through" day as the API's expiry: the start of the next local day (UTC ISO)."""
    if day is None:
        return None
    return formatting.to_api_time(datetime.combine(day + timedelta(days=1), time.min, tzinfo=formatting.display_tz()))


def valid_through(expires_at: str | None) -> date | None:
    """The last local day an expiry leaves the key working (the inverse of ``expiry_of``)."""
    parsed = formatting.parse_time(expires_at)
    return None if parsed is None else (parsed.astimezone(formatting.display_tz()) - timedelta(seconds=1)).date()


def expired(expires_at: str | None) -> bool:
    parsed = formatting.parse_time(expires_at)
    return parsed is not None and parsed <= datetime.now(UTC)


def table_height(rows: int) -> int:
    """A dataframe tall enough to show ``rows`` rows without its own scrollbar."""
    return 38 + 35 * max(1, rows)


def pii_kind(kind: str) -> str:
    return t(f"pii.{kind}") if kind in PII_KINDS else kind


def pii_blocked_line(blocked: dict[str, Any]) -> str:
    """'차단된 요청에서: 전화번호 2, 카드번호 1' (values found in requests refused under block)."""
    parts = ", ".join(f"{pii_kind(kind)} {int(n):,}" for kind, n in sorted(blocked.items(), key=lambda kv: -int(kv[1])))
    return formatting.escape_markdown(t("pii.blocked_line", kinds=parts))


def pii_policy_label(policy: str | None) -> str:
    return t("pii.policy_default") if policy is None else t(f"pii.policy_{policy}") if policy in PII_POLICIES \
        else policy


def time_range(key: str, default: str = "30d") -> tuple[str | None, str | None]:
    """A range picker; returns (since, until) as API ISO UTC strings (None: unbounded)."""
    choice = st.selectbox(t("common.time_range"), RANGES, index=RANGES.index(default),
                          format_func=lambda r: t(f"range.{r}"), key=f"{key}_range")
    now = datetime.now(UTC)
    if choice in _RANGE_DELTAS:
        return formatting.to_api_time(now - _RANGE_DELTAS[choice]), None
    if choice == "all":
        return None, None
    tz = formatting.display_tz()
    today = now.astimezone(tz).date()
    c1, c2 = st.columns(2)
    start = c1.date_input(t("common.from"), today - timedelta(days=7), key=f"{key}_from")
    end = c2.date_input(t("common.to"), today, key=f"{key}_to")
    since = datetime.combine(start, time.min, tzinfo=tz)
    until = datetime.combine(end, time.min, tzinfo=tz) + timedelta(days=1)
    return formatting.to_api_time(since), formatting.to_api_time(until)


def key_source_label(source: str | None) -> str:
    return t(f"source.{source}") if source in ("server", "user") else "-"


def health_lines(probes: list[dict[str, Any]]) -> None:
    """Each service's probe as coloured text (no emoji: they render as empty boxes on
    servers without an emoji font)."""
    for h in probes:
        colour, word = ("green", t("host.ok")) if h["ok"] else ("red", t("host.down"))
        status = h["status"] if h["status"] is not None else "-"
        st.markdown(f":{colour}[**{formatting.escape_markdown(word)}**] · {formatting.escape_markdown(h['service'])}"
                    f" · {t('host.http')} {status} · {h['latency_ms']} ms")


def text_cell(value: object) -> str:
    """Caller-supplied text for a table cell: as is (dataframes never render Markdown or
    links), '-' when empty."""
    return "-" if value is None or value == "" else str(value)


def query_param(name: str, allowed: tuple[str, ...] | None = None) -> str | None:
    """A filter from the page's URL (deep links), validated."""
    value = st.query_params.get(name)
    if value is None or value == "" or len(value) > 200:
        return None
    if allowed is not None and value not in allowed:
        return None
    return value


def cost_or_unpriced(usd: object, krw: object, currency: str = "KRW") -> str:
    """'가격 없음' for an unpriced amount (None), never ₩0."""
    if usd is None:
        return t("common.unpriced")
    return formatting.money(usd, krw, currency)


def export_panel(*, state_key: str, signature: tuple[object, ...],
                 fetch: Callable[[str | None, int | None], bytes | None], name: str, since: str | None,
                 until: str | None, prepare_label: str, ready: Callable[[exports.Prepared], str], download_label: str,
                 button_key: str) -> None:
    """A CSV export of the filters on screen, fetched only when asked: ``fetch(until,
    before_id)`` gets one part (newest first); a part that was cut offers the next (older)
    one, which starts after the cut part's last row (its time and ``row_id``: rows sharing
    that time are neither skipped nor repeated). A prepared file is dropped as soon as the
    filters (``signature``) change, so it always matches the screen."""
    prepared: exports.Prepared | None = st.session_state.get(state_key)
    if prepared is not None and prepared.signature[:len(signature)] != signature:
        st.session_state.pop(state_key)
        prepared = None
        st.caption(t("export.stale"))
    if st.button(prepare_label, key=f"{button_key}_prepare"):
        body = fetch(until, None)
        if body is not None:
            prepared = exports.prepare((*signature, None), body, name, since, until, exports.part_rows())
            st.session_state[state_key] = prepared
    if prepared is None:
        return
    if prepared.truncated and st.button(t("export.next"), key=f"{button_key}_next"):
        part_until, after_id = prepared.oldest, prepared.oldest_id
        body = fetch(part_until, after_id)
        if body is not None:
            prepared = exports.prepare((*signature, (part_until, after_id)), body, name, since, part_until,
                                       exports.part_rows())
            st.session_state[state_key] = prepared
    st.caption(ready(prepared))
    if prepared.truncated:
        st.warning(t("export.truncated", limit=prepared.limit))
    st.iframe(exports.download_frame(prepared, download_label), height=48)
