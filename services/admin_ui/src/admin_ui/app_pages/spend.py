"""Spend: grouped by day (Korean days), model, key source or client key; USD or KRW; the
ledger as CSV with the filters on screen."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from admin_ui import exports, widgets
from admin_ui import formatting as fmt
from admin_ui.i18n import t

GROUPS = ("day", "model", "key_source", "client_key")
api = widgets.admin()
st.title(t("spend.title"))

keys = widgets.call(api.keys)
key_names = {k["id"]: f'{k["name"]} ({k["short_id"]})' for k in (keys["items"] if keys else [])}
prices = widgets.quiet(api.prices)
# the catalogue and the operator's EXTRA_MODELS (their rows are unpriced)
models = [m["model"] for m in prices["models"]] + list(prices.get("extra_models") or []) if prices else []

c1, c2, c3, c5, c4 = st.columns([2, 2, 2, 2, 1])
with c1:
    since, until = widgets.time_range("spend", default="30d")
group_by = c2.selectbox(t("spend.group_by"), GROUPS, key="spend_group", format_func=lambda g: t(f"group.{g}"))
client_key_id = c3.selectbox(t("common.client"), [None, *key_names], key="spend_client",
                             format_func=lambda k: t("common.all") if k is None else key_names.get(k, k))
model = c5.selectbox(t("common.model"), [None, *models], key="spend_model",
                     format_func=lambda m: t("common.all") if m is None else m)
currency = c4.radio(t("common.currency"), ("KRW", "USD"), key="spend_currency", horizontal=True)

filters = {"since": since, "until": until, "client_key_id": client_key_id, "model": model}
data = widgets.call(api.spend, group_by=group_by, **filters)
if data is None:
    st.stop()

total = data["total"]
m1, m2, m3 = st.columns(3)
m1.metric(t("spend.total"), fmt.money(total["cost_usd"], total["cost_krw"], currency))
m2.metric(t("common.requests"), fmt.number(total["requests"]))
m3.metric(t("common.tokens"), fmt.number(int(total["input_tokens"]) + int(total["output_tokens"])))


def _label(row: dict[str, str]) -> str:
    if group_by == "key_source":
        return widgets.key_source_label(row["key"])
    if group_by == "client_key" and not row["key"]:
        return t("common.anonymous")
    return row["label"]


rows = data["rows"]
if rows:
    cost_col = t("common.cost_krw") if currency == "KRW" else t("common.cost_usd")
    table = pd.DataFrame([{
        t(f"group.{group_by}"): _label(r), t("common.requests"): r["requests"],
        t("common.input_tokens"): r["input_tokens"], t("common.output_tokens"): r["output_tokens"],
        # a number, so the column sorts by amount; formatted by the column
        cost_col: float(fmt.decimal(r["cost_krw"] if currency == "KRW" else r["cost_usd"])),
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        cost_col: st.column_config.NumberColumn(format="₩%.2f" if currency == "KRW" else "$%.6f")})
    chart = pd.DataFrame({"key": [_label(r) for r in rows],
                          currency: [float(fmt.decimal(r["cost_krw"] if currency == "KRW" else r["cost_usd"]))
                                     for r in rows]})
    st.bar_chart(chart, x="key", y=currency, x_label="", y_label="₩" if currency == "KRW" else "$",
                 horizontal=group_by != "day")
    if group_by == "day":
        st.caption(t("common.dates_kst"))
else:
    st.info(t("common.none"))

# -- export: the filters on screen, newest first; fetched only when asked -------------------------
st.divider()
range_key = (st.session_state.get("spend_range"),
             until if st.session_state.get("spend_range") == "custom" else None)
widgets.export_panel(
    state_key="_spend_export", signature=(range_key, client_key_id, model),
    fetch=lambda part_until, before_id: widgets.call(api.ledger_csv, **{**filters, "until": part_until},
                                                     before_id=before_id, limit=exports.part_rows()),
    name="ledger", since=since, until=until, prepare_label=t("spend.csv_prepare"),
    ready=lambda prepared: t("spend.csv_ready", rows=prepared.rows) + " · " + prepared.filename,
    download_label=t("spend.csv_download"), button_key="spend_csv")
