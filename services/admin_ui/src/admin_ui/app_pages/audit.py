"""Who did what to which client key, and the alerts raised (budget, upstream circuit, error
rate), newest first."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

PAGE_SIZE = 50
# the detail fields the admin API writes that have a translated name (others show as sent)
FIELDS = ("daily_limit_usd", "monthly_limit_usd", "daily_limit_usd_before", "monthly_limit_usd_before",
          "may_use_server_key", "pii_policy", "pii_policy_before", "expires_at", "expires_at_before",
          "previous_key_id", "previous_short_id")
api = widgets.admin()
st.title(t("audit.title"))


def _change(detail: dict[str, Any]) -> str:
    parts = []
    for name, value in detail.items():
        if name == "name":
            continue
        if value is None and "limit" in name:
            value = t("common.unlimited")
        elif value is None and name.startswith("pii_policy"):
            value = t("audit.server_default")
        elif name.startswith("expires_at"):
            value = fmt.when(value) if value else t("keys.no_expiry")
        label = t(f"audit.field.{name}") if name in FIELDS else name
        parts.append(f"{label}={value}")
    return ", ".join(parts)


page = int(st.session_state.get("audit_page", 1))
data = widgets.call(api.audit, page=page, page_size=PAGE_SIZE)
if data is not None:
    items = data["items"]
    if items:
        st.dataframe(pd.DataFrame([{
            t("audit.at"): fmt.when(a["at"], seconds=True), t("audit.actor"): a["actor"],
            t("audit.action"): t(f"audit.{a['action']}") if a["action"] in ("key_created", "key_revoked",
                                                                             "budget_changed", "pii_policy_changed",
                                                                             "key_rotated", "expiry_changed") else a["action"],
            t("audit.key"): f'{a.get("key_name") or a["detail"].get("name") or ""} ({a.get("key_short_id") or a["key_id"][:8]})',
            t("audit.detail"): _change(a["detail"]),
        } for a in items]), hide_index=True, width="stretch")
    else:
        st.info(t("audit.none"))
    pages = max(1, math.ceil(data["total"] / PAGE_SIZE))
    if page > pages:
        st.session_state["audit_page"] = pages
    st.pagination(pages, key="audit_page")

st.subheader(t("alerts.title"))
alerts = widgets.call(api.alerts)
if alerts is not None:
    if alerts["items"]:
        st.dataframe(pd.DataFrame([{
            t("audit.at"): fmt.when(a["created_at"], seconds=True),
            t("alerts.kind"): t(f"alerts.{a['kind']}") if a["kind"] in ("budget", "circuit", "error_rate") else a["kind"],
            t("alerts.text"): a["text"],
            t("alerts.delivered"): t("common.yes") if a["delivered"] else t("common.no"),
        } for a in alerts["items"]]), hide_index=True, width="stretch")
    else:
        st.info(t("alerts.none"))
