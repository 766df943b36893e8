"""Client keys: issue (the key is shown once, in the answer to that click only), revoke,
set budgets, and see each key's budget use."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

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


with st.expander(t("keys.create"), expanded=False), st.form("create_key", clear_on_submit=True):
    name = st.text_input(t("keys.name"), max_chars=100, key="new_key_name")
    c1, c2 = st.columns(2)
    daily_text = c1.text_input(t("keys.daily"), key="new_key_daily")
    monthly_text = c2.text_input(t("keys.monthly"), key="new_key_monthly")
    may_use_server = st.checkbox(t("keys.server_key"), value=True, key="new_key_server")
    create = st.form_submit_button(t("keys.submit"), type="primary", key="new_key_submit")
if create:
    ok_daily, daily = _amount(daily_text)
    ok_monthly, monthly = _amount(monthly_text)
    if not (ok_daily and ok_monthly):
        st.error(t("keys.bad_amount"))
    else:
        created = widgets.call(api.create_key, name.strip(), daily, monthly, may_use_server)
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


def _cap(value: str | None) -> str:
    return t("common.unlimited") if value is None else fmt.usd(value)


st.dataframe(pd.DataFrame([{
    t("keys.short_id"): k["short_id"], t("keys.name"): k["name"],
    t("keys.status"): t("keys.revoked") if k["revoked_at"] else t("keys.active"),
    t("keys.created_at"): fmt.when(k["created_at"]),
    t("keys.spent_today"): fmt.usd(k["spent_today_usd"]), t("keys.daily_short"): _cap(k["daily_limit_usd"]),
    t("keys.spent_month"): fmt.usd(k["spent_month_usd"]), t("keys.monthly_short"): _cap(k["monthly_limit_usd"]),
    t("keys.server_key"): "✓" if k["may_use_server_key"] else "✗",
} for k in items]), hide_index=True, width="stretch")

capped = [k for k in items if not k["revoked_at"] and (k["daily_limit_usd"] or k["monthly_limit_usd"])]
if capped:
    st.subheader(t("keys.utilisation"))
    for k in capped:
        for period, spent, cap in ((t("keys.daily_short"), k["spent_today_usd"], k["daily_limit_usd"]),
                                   (t("keys.monthly_short"), k["spent_month_usd"], k["monthly_limit_usd"])):
            if cap is None:
                continue
            limit = fmt.decimal(cap)
            used = fmt.decimal(spent)
            ratio = 1.0 if limit == 0 else float(min(Decimal(1), used / limit))
            st.progress(ratio, text=fmt.escape_markdown(t("keys.util_line", name=k["name"], short=k["short_id"],
                                                          period=period, spent=fmt.usd(spent), cap=fmt.usd(cap))))

st.subheader(t("keys.manage"))
by_id = {k["id"]: k for k in items}
chosen = st.selectbox(t("keys.select"), list(by_id), key="keys_selected",
                      format_func=lambda i: f'{by_id[i]["name"]} ({by_id[i]["short_id"]})'
                      + (f' · {t("keys.revoked")}' if by_id[i]["revoked_at"] else ""))
if chosen is not None:
    key = by_id[chosen]
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
        confirm = st.checkbox(t("keys.revoke_confirm"), key=f"revoke_confirm_{chosen}")
        clicked = st.button(t("keys.revoke"), key=f"revoke_{chosen}", disabled=not confirm, type="secondary")
        if clicked and confirm and widgets.call(api.revoke_key, chosen) is not None:
            st.session_state[FLASH] = t("keys.revoked_ok", short=key["short_id"])
            st.rerun()
