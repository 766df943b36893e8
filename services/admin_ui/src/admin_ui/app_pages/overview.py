"""Overview: what is happening now (the last 15 minutes by status class, latency and time to
first token, chat-api/monitor/database health, each upstream's circuit), today's and this
month's spend (Korean days; server-paid and user-paid apart), requests and errors as clients
saw them, keys about to hit their budget, personal data found per kind, the last 24 hours
as charts (requests by status, latency, cost), top models and clients, the last 30 days."""
from __future__ import annotations

import altair as alt
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
n1, n2, n3, n4, n5, n6 = st.columns(6)
n1.metric(t("overview.now_requests"), fmt.number(now.get("requests", 0)))
errors, total = int(now.get("errors", 0)), int(now.get("requests", 0))
n2.metric(t("overview.now_errors"), fmt.number(errors), fmt.percent(errors, total), delta_color="off",
          delta_arrow="off")


def _ms(value: object) -> str:
    return "-" if value is None else f"{fmt.number(value)} ms"


n3.metric(t("overview.p50"), _ms(now.get("p50_ms")))
n4.metric(t("overview.p95"), _ms(now.get("p95_ms")))
n5.metric(t("overview.ttft_p50"), _ms(now.get("ttft_p50_ms")))
n6.metric(t("overview.ttft_p95"), _ms(now.get("ttft_p95_ms")))
classes = now.get("by_class") or {}
notes = [t("overview.classes", classes=", ".join(f"{c} {fmt.number(n)}" for c, n in sorted(classes.items())))
         if classes else "", t("overview.streams", n=int(now.get("streams") or 0)) if now.get("streams")
         else t("overview.ttft_none")]
st.caption(fmt.escape_markdown(" · ".join(n for n in notes if n)))

health_col, upstream_col = st.columns(2)
with health_col:
    st.markdown(f'**{t("overview.health")}**')
    widgets.health_lines(admin_api.monitor_api().health())
with upstream_col:
    st.markdown(f'**{t("overview.upstreams")}**')
    upstreams = widgets.quiet(widgets.admin().upstreams)
    if upstreams is None:
        st.caption(t("overview.upstreams_none"))
    else:
        for u in upstreams.get("items") or []:
            closed = u.get("circuit") == "closed"
            state = (t("overview.circuit_closed") if closed
                     else t("overview.circuit_open", seconds=u.get("cooldown_seconds", 0)))
            st.markdown(f':{"green" if closed else "red"}[**{fmt.escape_markdown(state)}**] · '
                        f'{fmt.escape_markdown(u["name"])} · {fmt.escape_markdown(u.get("kind", ""))}'
                        + (f' · {t("host.failures")} {int(u["consecutive_failures"])}'
                           if u.get("consecutive_failures") else ""))

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
        t("keys.daily_short"): widgets.cap(k["daily_limit_usd"]),
        t("keys.spent_month"): float(fmt.decimal(k["spent_month_usd"])),
        t("keys.monthly_short"): widgets.cap(k["monthly_limit_usd"]),
        t("keys.last_used"): fmt.when(k["last_used_at"]) if k.get("last_used_at") else t("keys.never_used"),
    } for k in risk]), hide_index=True, width="stretch", column_config={
        t("keys.utilisation_pct"): st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.1f%%")})
else:
    st.caption(t("overview.risk_none"))

# -- personal data --------------------------------------------------------------------------------
st.subheader(t("overview.pii"))
pii = widgets.quiet(widgets.admin().pii)
found = (pii or {}).get("total") or {}
blocked = (pii or {}).get("blocked") or {}  # in requests refused under the block policy
if found or blocked:
    kinds = sorted(found, key=lambda k: -int(found[k]))
    cols = st.columns(min(len(kinds) + 1, 9))
    cols[0].metric(t("pii.total"), fmt.number(sum(int(v) for v in found.values())))
    for col, kind in zip(cols[1:], kinds, strict=False):
        col.metric(widgets.pii_kind(kind), fmt.number(found[kind]))
    if blocked:
        st.caption(widgets.pii_blocked_line(blocked))
    by_key = (pii or {}).get("by_key") or []
    if by_key:
        with st.expander(t("overview.pii_keys")):
            st.dataframe(pd.DataFrame([{
                t("common.client"): (f'{k["name"]} ({k["short_id"]})' if k.get("short_id") else t("common.anonymous")),
                **{widgets.pii_kind(kind): int(k["counts"].get(kind, 0)) for kind in kinds},
                t("pii.blocked"): sum(int(n) for n in (k.get("blocked") or {}).values()),
            } for k in by_key]), hide_index=True, width="stretch")
else:
    st.caption(t("overview.pii_none"))

# -- the last 24 hours ----------------------------------------------------------------------------
st.subheader(t("overview.charts"))
series = widgets.quiet(widgets.admin().timeseries)
if series is not None and series.get("buckets"):
    tz = fmt.display_tz()
    hours = [fmt.parse_time(b["start"]) for b in series["buckets"]]
    local = [h.astimezone(tz).replace(tzinfo=None) if h else None for h in hours]
    hour_col = t("overview.hour")
    status_frame = pd.DataFrame([{hour_col: h, **{c: int(b["by_class"].get(c, 0)) for c in ("2xx", "4xx", "5xx")}}
                                 for h, b in zip(local, series["buckets"], strict=False)])
    # Altair with the hour written as digits ("14:00"): Vega's default axis labels are English ("02 PM").
    axis = alt.Axis(format="%H:%M", title=None, labelAngle=0, tickCount=6)
    status_long = status_frame.melt(id_vars=[hour_col], var_name="status", value_name="n")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown(f'**{t("overview.chart_status")}**')
        st.altair_chart(alt.Chart(status_long).mark_bar().encode(
            x=alt.X(f"{hour_col}:T", axis=axis), y=alt.Y("n:Q", title=None, stack=True),
            color=alt.Color("status:N", scale=alt.Scale(domain=["2xx", "4xx", "5xx"],
                                                        range=["#2e7d32", "#f9a825", "#c62828"]),
                            legend=alt.Legend(title=None, orient="bottom"))).properties(height=220),
            width="stretch")
    with c2:
        st.markdown(f'**{t("overview.chart_latency")}**')
        latency = pd.DataFrame([{hour_col: h, "p50": b["p50_ms"], "p95": b["p95_ms"]}
                                for h, b in zip(local, series["buckets"], strict=False)])
        latency_long = latency.melt(id_vars=[hour_col], var_name="pct", value_name="ms").dropna()
        # points as well as lines: an hour with traffic between quiet ones is still visible
        st.altair_chart(alt.Chart(latency_long).mark_line(point=True).encode(
            x=alt.X(f"{hour_col}:T", axis=axis, scale=alt.Scale(domain=[local[0], local[-1]])),
            y=alt.Y("ms:Q", title="ms"),
            color=alt.Color("pct:N", scale=alt.Scale(domain=["p50", "p95"], range=["#1565c0", "#90caf9"]),
                            legend=alt.Legend(title=None, orient="bottom"))).properties(height=220),
            width="stretch")
    with c3:
        st.markdown(f'**{t("overview.chart_cost")}**')
        cost = pd.DataFrame([{hour_col: h, "KRW": float(fmt.decimal(b["cost_krw"]))}
                             for h, b in zip(local, series["buckets"], strict=False)])
        st.altair_chart(alt.Chart(cost).mark_bar(color="#1565c0").encode(
            x=alt.X(f"{hour_col}:T", axis=axis), y=alt.Y("KRW:Q", title="₩")).properties(height=220),
            width="stretch")

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
