"""Client keys: issue (the key is shown once, in the answer to that click only), revoke,
set budgets and the personal-data policy, and see each key's budget use — fullest first,
with %, a coloured risk level, what is held by requests in flight, today's budget refusals
and when it was last used; searchable and paged so 1,000 keys stay one short table. A key's
own view (``?key=<id>``) adds the personal data found in its requests this month."""
from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
import streamlit as st

from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

api = widgets.admin()
st.title(t("keys.title"))
FLASH = "_keys_flash"
if FLASH in st.session_state:  # a message from the action before the rerun (never a secret)
    st.success(st.session_state.pop(FLASH))


def _amount(text: str) -> tuple[bool, str | None]:
    """('', None) is uncapped; otherwise a non-negative decimal string."""
    text = text.strip().replace(",", "").lstrip("$")
    if not text:
        return True, None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False, None
    if not value.is_finite() or value < 0:
        return False, None
    return True, str(value)


PAGE_SIZE = 50
WARN_PCT = 80.0

# Kept filled on a refusal (an empty name, a bad amount), so nothing typed is lost.
with st.expander(t("keys.create"), expanded=False), st.form("create_key", clear_on_submit=False):
    name = st.text_input(t("keys.name"), max_chars=100, key="new_key_name")
    c1, c2 = st.columns(2)
    daily_text = c1.text_input(t("keys.daily"), key="new_key_daily")
    monthly_text = c2.text_input(t("keys.monthly"), key="new_key_monthly")
    may_use_server = st.checkbox(t("keys.server_key"), value=True, key="new_key_server")
    c3, c4 = st.columns(2)
    new_policy = c3.selectbox(t("pii.policy"), widgets.PII_POLICIES, key="new_key_pii",
                              format_func=widgets.pii_policy_label)
    new_expiry = c4.date_input(t("keys.valid_through"), value=None, key="new_key_expires",
                               min_value=datetime.now(fmt.display_tz()).date(), format="YYYY-MM-DD")
    create = st.form_submit_button(t("keys.submit"), type="primary", key="new_key_submit")
if create:
    ok_daily, daily = _amount(daily_text)
    ok_monthly, monthly = _amount(monthly_text)
    if not name.strip():
        st.error(t("keys.name_required"))
    elif not (ok_daily and ok_monthly):
        st.error(t("keys.bad_amount"))
    else:
        created = widgets.call(api.create_key, name.strip(), daily, monthly, may_use_server, new_policy,
                               widgets.expiry_of(new_expiry))
        if created is not None:
            # Shown in this run only and kept nowhere: the next rerun no longer has it.
            st.success(t("keys.created"))
            st.code(created["key"], language=None)

data = widgets.call(api.keys)
if data is None:
    st.stop()
items = data["items"]
if not items:
    st.info(t("keys.none"))
    st.stop()


def _level(k: dict[str, Any]) -> str:
    pct = k.get("utilisation_pct")
    if k["revoked_at"]:
        return t("keys.revoked")
    if widgets.expired(k.get("expires_at")):
        return t("keys.expired")
    if pct is None:
        return t("keys.level_none")
    if pct >= 100 or k.get("refused_today"):
        return t("keys.level_full")
    return t("keys.level_warn") if pct >= WARN_PCT else t("keys.level_ok")


_COLOURS = {t("keys.level_full"): "background-color: #f8d7da; color: #842029",
            t("keys.expired"): "background-color: #f8d7da; color: #842029",
            t("keys.level_warn"): "background-color: #fff3cd; color: #664d03",
            t("keys.level_ok"): "background-color: #d1e7dd; color: #0f5132"}


def _usd_number(value: str | None) -> float | None:
    return None if value is None else float(fmt.decimal(value))


query = st.text_input(t("common.search"), key="keys_search", max_chars=100).strip().casefold()
shown = [k for k in items if not query or query in k["name"].casefold() or query in k["short_id"].casefold()]
# Fullest first (live keys before revoked ones); uncapped keys after capped ones.
# (0 % is a capped key's utilisation: it sorts before the uncapped ones, whose is None)
shown.sort(key=lambda k: (bool(k["revoked_at"]),
                          -(k["utilisation_pct"] if k.get("utilisation_pct") is not None else -1.0),
                          -(k.get("refused_today") or 0), k["name"]))
if st.session_state.get("_keys_query") != query:
    st.session_state["_keys_query"] = query
    st.session_state["keys_page"] = 1
pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
page = min(int(st.session_state.get("keys_page", 1)), pages)
if int(st.session_state.get("keys_page", 1)) > pages:
    st.session_state["keys_page"] = pages
rows = shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
st.caption(t("common.page_of", total=len(shown), page=page, pages=pages) + " · " + t("keys.sorted"))
if rows:
    level_col = t("keys.level")
    table = pd.DataFrame([{
        t("keys.name"): k["name"], t("keys.short_id"): k["short_id"], level_col: _level(k),
        t("keys.utilisation_pct"): k.get("utilisation_pct"),
        t("keys.refused_today"): int(k.get("refused_today") or 0),
        t("keys.last_used"): fmt.when(k["last_used_at"]) if k.get("last_used_at") else t("keys.never_used"),
        t("keys.spent_today"): _usd_number(k["spent_today_usd"]), t("keys.daily_short"): widgets.cap(k["daily_limit_usd"]),
        t("keys.spent_month"): _usd_number(k["spent_month_usd"]),
        t("keys.monthly_short"): widgets.cap(k["monthly_limit_usd"]),
        t("keys.held"): (_usd_number(k.get("held_today_usd")) or 0.0) + (_usd_number(k.get("held_month_usd")) or 0.0)
        if k.get("held_today_usd") is not None else None,
        t("pii.policy"): widgets.pii_policy_label(k.get("pii_policy")),
        t("keys.expires"): fmt.when(k["expires_at"]) if k.get("expires_at") else t("keys.no_expiry"),
        t("keys.created_at"): fmt.when(k["created_at"]),
        t("keys.server_key"): t("common.yes") if k["may_use_server_key"] else t("common.no"),
    } for k in rows])
    money = st.column_config.NumberColumn(format="$%.6f")
    st.dataframe(table.style.map(lambda v: _COLOURS.get(v, ""), subset=[level_col]), hide_index=True,
                 width="stretch", column_config={
                     t("keys.utilisation_pct"): st.column_config.ProgressColumn(min_value=0, max_value=100,
                                                                                format="%.1f%%"),
                     t("keys.spent_today"): money, t("keys.spent_month"): money, t("keys.held"): money})
else:
    st.info(t("common.none"))
st.pagination(pages, key="keys_page")

st.subheader(t("keys.manage"))
by_id = {k["id"]: k for k in items}
# A deep link (?key=<id>) opens that key; the choice is kept in the URL.
wanted = widgets.query_param("key")
if "keys_selected" not in st.session_state and wanted in by_id:
    st.session_state["keys_selected"] = wanted
chosen = st.selectbox(t("keys.select"), list(by_id), key="keys_selected",
                      format_func=lambda i: f'{by_id[i]["name"]} ({by_id[i]["short_id"]})'
                      + (f' · {t("keys.revoked")}' if by_id[i]["revoked_at"] else ""))
if chosen is not None:
    st.query_params["key"] = chosen
    key = by_id[chosen]
    st.markdown(f'#### {fmt.escape_markdown(t("keys.detail", name=key["name"], short=key["short_id"]))}')
    m1, m2, m3, m4 = st.columns(4)
    pct = key.get("utilisation_pct")
    m1.metric(t("keys.utilisation_pct"), "-" if pct is None else f"{pct:.1f}%", _level(key), delta_color="off",
              delta_arrow="off")
    m2.metric(t("keys.spent_today"), fmt.usd(key["spent_today_usd"]),
              f'{t("keys.daily_short")} {fmt.usd(key["daily_limit_usd"]) if key["daily_limit_usd"] else t("common.unlimited")}',
              delta_color="off", delta_arrow="off")
    m3.metric(t("keys.spent_month"), fmt.usd(key["spent_month_usd"]),
              f'{t("keys.monthly_short")} {fmt.usd(key["monthly_limit_usd"]) if key["monthly_limit_usd"] else t("common.unlimited")}',
              delta_color="off", delta_arrow="off")
    m4.metric(t("keys.refused_today"), fmt.number(key.get("refused_today") or 0),
              f'{t("keys.held")} {fmt.usd((_usd_number(key.get("held_today_usd")) or 0.0) + (_usd_number(key.get("held_month_usd")) or 0.0))}',
              delta_color="off", delta_arrow="off")
    st.caption(f'{t("keys.last_used")}: '
               + (fmt.when(key["last_used_at"], seconds=True) if key.get("last_used_at") else t("keys.never_used"))
               + f' · {t("pii.policy")}: {widgets.pii_policy_label(key.get("pii_policy"))}'
               + f' · {t("keys.expires")}: '
               + (fmt.when(key["expires_at"]) if key.get("expires_at") else t("keys.no_expiry")))

    st.markdown(f'**{t("keys.pii_month")}**')
    found = widgets.quiet(api.pii, client_key_id=chosen)
    counts = (found or {}).get("total") or {}
    blocked = (found or {}).get("blocked") or {}
    if counts:
        kinds = sorted(counts, key=lambda kind: -int(counts[kind]))
        for col, kind in zip(st.columns(len(widgets.PII_KINDS)), kinds, strict=False):
            col.metric(widgets.pii_kind(kind), fmt.number(counts[kind]))
    if blocked:
        st.caption(widgets.pii_blocked_line(blocked))
    if not counts and not blocked:
        st.caption(t("keys.pii_none"))

    with st.form(f"pii_{chosen}"):
        policy = st.selectbox(t("pii.policy"), widgets.PII_POLICIES, format_func=widgets.pii_policy_label,
                              index=widgets.PII_POLICIES.index(key.get("pii_policy"))
                              if key.get("pii_policy") in widgets.PII_POLICIES else 0, key=f"pii_policy_{chosen}")
        save_policy = st.form_submit_button(t("pii.policy_save"), key=f"pii_save_{chosen}")
    if save_policy and widgets.call(api.set_pii_policy, chosen, policy) is not None:
        st.session_state[FLASH] = t("pii.policy_saved")
        st.rerun()

    with st.form(f"expiry_{chosen}"):
        through = st.date_input(t("keys.valid_through"), value=widgets.valid_through(key.get("expires_at")),
                                key=f"expiry_day_{chosen}", format="YYYY-MM-DD")
        save_expiry = st.form_submit_button(t("keys.expiry_save"), key=f"expiry_save_{chosen}")
    if save_expiry and widgets.call(api.set_expiry, chosen, widgets.expiry_of(through)) is not None:
        st.session_state[FLASH] = t("keys.expiry_saved")
        st.rerun()

    with st.form(f"budget_{chosen}"):
        c1, c2 = st.columns(2)
        daily_text = c1.text_input(t("keys.daily"), value=key["daily_limit_usd"] or "", key=f"budget_daily_{chosen}")
        monthly_text = c2.text_input(t("keys.monthly"), value=key["monthly_limit_usd"] or "",
                                     key=f"budget_monthly_{chosen}")
        save = st.form_submit_button(t("keys.set_budget"), key=f"budget_save_{chosen}")
    if save:
        ok_daily, daily = _amount(daily_text)
        ok_monthly, monthly = _amount(monthly_text)
        if not (ok_daily and ok_monthly):
            st.error(t("keys.bad_amount"))
        elif widgets.call(api.set_budget, chosen, daily, monthly) is not None:
            st.session_state[FLASH] = t("keys.budget_saved")
            st.rerun()
    if not key["revoked_at"]:
        # Rotation: a new secret with this key's settings, this one revoked. The secret is
        # shown in this run only, like a created key's.
        rotate_ok = st.checkbox(t("keys.rotate_confirm"), key=f"rotate_confirm_{chosen}")
        if st.button(t("keys.rotate"), key=f"rotate_{chosen}", disabled=not rotate_ok) and rotate_ok:
            rotated = widgets.call(api.rotate_key, chosen)
            if rotated is not None:
                st.success(t("keys.rotated", old=key["short_id"], new=rotated["item"]["short_id"]))
                st.code(rotated["key"], language=None)
        confirm = st.checkbox(t("keys.revoke_confirm"), key=f"revoke_confirm_{chosen}")
        clicked = st.button(t("keys.revoke"), key=f"revoke_{chosen}", disabled=not confirm, type="secondary")
        if clicked and confirm and widgets.call(api.revoke_key, chosen) is not None:
            st.session_state[FLASH] = t("keys.revoked_ok", short=key["short_id"])
            st.rerun()
