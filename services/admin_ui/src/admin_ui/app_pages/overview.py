"""Overview: today's and this month's spend, traffic and errors; top models and clients;
the last 30 days."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

st.title(t("overview.title"))
data = widgets.call(widgets.admin().overview)
if data is None:
    st.stop()

for label, totals in ((t("common.today"), data["today"]), (t("common.month"), data["month"])):
    st.subheader(label)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(t("overview.spend"), fmt.krw(totals["cost_krw"]), fmt.usd(totals["cost_usd"]), delta_color="off",
              delta_arrow="off")
    c2.metric(t("common.requests"), fmt.number(totals["requests"]))
    c3.metric(t("common.tokens"), fmt.number(int(totals["input_tokens"]) + int(totals["output_tokens"])),
              f'{fmt.number(totals["input_tokens"])} / {fmt.number(totals["output_tokens"])}', delta_color="off",
              delta_arrow="off")
    c4.metric(t("overview.error_rate"), fmt.percent(int(totals["errors"]), int(totals["requests"])))
st.caption(t("overview.rate", rate=fmt.number(data["usd_krw_rate"])) + " · " + t("common.dates_utc"))

left, right = st.columns(2)
with left:
    st.subheader(t("overview.top_models"))
    if data["top_models"]:
        st.dataframe(pd.DataFrame([{
            t("common.model"): m["model"], t("common.requests"): m["requests"],
            t("common.cost_krw"): fmt.krw(m["cost_krw"]), t("common.cost_usd"): fmt.usd(m["cost_usd"]),
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
