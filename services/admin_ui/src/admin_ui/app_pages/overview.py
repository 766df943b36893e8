"""Overview: what is happening now (last 15 minutes, service health), today's and this
month's spend (Korean days; server-paid and user-paid apart), requests and errors as clients
saw them, keys about to hit their budget, top models and clients, the last 30 days."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from admin_ui import api as admin_api
from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

st.title(t("overview.title"))
data = widgets.call(widgets.admin().overview)
if data is None:
    st.stop()

# -- now ---------------------------------------------------------------------------------------
now = data.get("last_15m") or {}
st.subheader(t("overview.now"))
n1, n2, n3, n4 = st.columns(4)
n1.metric(t("overview.now_requests"), fmt.number(now.get("requests", 0)))
errors, total = int(now.get("errors", 0)), int(now.get("requests", 0))
n2.metric(t("overview.now_errors"), fmt.number(errors), fmt.percent(errors, total), delta_color="off",
          delta_arrow="off")
n3.metric(t("overview.p50"), "-" if now.get("p50_ms") is None else f'{fmt.number(now["p50_ms"])} ms')
n4.metric(t("overview.p95"), "-" if now.get("p95_ms") is None else f'{fmt.number(now["p95_ms"])} ms')
classes = now.get("by_class") or {}
if classes:
    st.caption(fmt.escape_markdown(t("overview.classes", classes=", ".join(
        f"{c} {fmt.number(n)}" for c, n in sorted(classes.items())))))
with st.expander(t("overview.health"), expanded=False):
    widgets.health_lines(admin_api.monitor_api().health())

# -- today and this month ---------------------------------------------------------------------------
for label, totals in ((t("common.today"), data["today"]), (t("common.month"), data["month"])):
    st.subheader(label)
    c1, c2, c3, c4, c5 = st.columns(5)
    server_usd = totals.get("server_cost_usd", totals["cost_usd"])
    c1.metric(t("overview.server_paid"), fmt.krw(totals.get("server_cost_krw", totals["cost_krw"])),
              fmt.usd(server_usd), delta_color="off", delta_arrow="off")
    c2.metric(t("overview.user_paid"), fmt.krw(totals.get("user_cost_krw", 0)), fmt.usd(totals.get("user_cost_usd", 0)),
              delta_color="off", delta_arrow="off")
    c3.metric(t("common.requests"), fmt.number(totals["requests"]))
    c4.metric(t("common.tokens"), fmt.number(int(totals["input_tokens"]) + int(totals["output_tokens"])),
              f'{fmt.number(totals["input_tokens"])} / {fmt.number(totals["output_tokens"])}', delta_color="off",
              delta_arrow="off")
    c5.metric(t("overview.error_rate"), fmt.percent(int(totals["errors"]), int(totals["requests"])))
    if totals.get("unpriced_requests"):
        st.caption(t("common.unpriced_some", n=int(totals["unpriced_requests"])))
st.caption(t("overview.rate", rate=fmt.number(data["usd_krw_rate"])) + " · " + t("common.dates_kst"))

# -- budget risk ----------------------------------------------------------------------------------
st.subheader(t("overview.risk"))
risk = data.get("budget_risk") or []
if risk:
    st.dataframe(pd.DataFrame([{
        t("keys.name"): k["name"], t("keys.short_id"): k["short_id"],
        t("keys.utilisation_pct"): k.get("utilisation_pct"),
        t("keys.refused_today"): int(k.get("refused_today") or 0),
        t("keys.spent_today"): float(fmt.decimal(k["spent_today_usd"])),
        t("keys.daily_short"): None if k["daily_limit_usd"] is None else float(fmt.decimal(k["daily_limit_usd"])),
        t("keys.spent_month"): float(fmt.decimal(k["spent_month_usd"])),
        t("keys.monthly_short"): None if k["monthly_limit_usd"] is None else float(fmt.decimal(k["monthly_limit_usd"])),
    } for k in risk]), hide_index=True, width="stretch", column_config={
        t("keys.utilisation_pct"): st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.1f%%")})
else:
    st.caption(t("overview.risk_none"))

# -- top models and clients ----------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    st.subheader(t("overview.top_models"))
    if data["top_models"]:
        st.dataframe(pd.DataFrame([{
            t("common.model"): m["model"], t("common.requests"): m["requests"],
            t("common.cost_krw"): widgets.cost_or_unpriced(m["cost_usd"], m["cost_krw"]),
            t("common.cost_usd"): widgets.cost_or_unpriced(m["cost_usd"], m["cost_krw"], "USD"),
        } for m in data["top_models"]]), hide_index=True, width="stretch")
    else:
        st.info(t("common.none"))
with right:
    st.subheader(t("overview.top_clients"))
    if data["top_clients"]:
        st.dataframe(pd.DataFrame([{
            t("common.client"): (f'{c["name"]} ({c["short_id"]})' if c.get("short_id")
                                 else t("common.anonymous") if not c.get("client_key_id") else c["client_key_id"][:8]),
            t("common.requests"): c["requests"], t("common.cost_krw"): fmt.krw(c["cost_krw"]),
            t("common.cost_usd"): fmt.usd(c["cost_usd"]),
        } for c in data["top_clients"]]), hide_index=True, width="stretch")
    else:
        st.info(t("common.none"))

st.subheader(t("overview.chart"))
chart = pd.DataFrame([{"day": d["day"], "KRW": float(fmt.decimal(d["cost_krw"]))} for d in data["by_day"]])
if not chart.empty:
    st.bar_chart(chart, x="day", y="KRW", x_label="", y_label="₩")
