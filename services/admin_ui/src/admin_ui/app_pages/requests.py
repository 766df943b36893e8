"""The request log: every client request once (refusals included), filtered by status,
client and time range — the filters live in the URL, so a link reopens the same view — a
row opens its detail, with the conversation turn when one was stored.

Ids, model names and error codes come from callers: they are shown in dataframes and with
st.text / st.code, never as Markdown."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from admin_ui import exports, widgets
from admin_ui import formatting as fmt
from admin_ui.i18n import t

api = widgets.admin()
STATUSES = ("", "error", "4xx", "5xx", "2xx", "400", "401", "402", "403", "429", "500", "502", "503", "504")
RANGES = ("1h", "24h", "7d", "30d", "all")
DELTAS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SIZES = (25, 50, 100, 200)
st.title(t("req.title"))

keys = widgets.call(api.keys)
key_items = keys["items"] if keys else []
key_names = {k["id"]: f'{k["name"]} ({k["short_id"]})' for k in key_items}

# The URL is the source of the filters on first load (a deep link), the widgets after.
if "_req_filters" not in st.session_state:
    st.session_state["_req_rid"] = widgets.query_param("rid")
defaults = {"req_status": widgets.query_param("status", STATUSES) or "",
            "req_client": widgets.query_param("client"), "req_range": widgets.query_param("range", RANGES) or "24h"}
for key, value in defaults.items():
    st.session_state.setdefault(key, value)
if st.session_state["req_client"] not in (None, *key_names):
    st.session_state["req_client"] = None

c1, c2, c3, c4 = st.columns([2, 3, 2, 1])
status = c1.selectbox(t("req.status_filter"), STATUSES, key="req_status",
                      format_func=lambda s: t("req.status_all") if not s else t("req.status_error") if s == "error" else s)
client = c2.selectbox(t("common.client"), [None, *key_names], key="req_client", placeholder=t("common.all"),
                      format_func=lambda k: t("common.all") if k is None else key_names.get(k, k))
range_choice = c3.selectbox(t("common.time_range"), RANGES, key="req_range",
                            format_func=lambda r: t("range.1h") if r == "1h" else t(f"range.{r}"))
page_size = c4.selectbox(t("common.page_size"), SIZES, index=1, key="req_page_size")

signature = (status, client, range_choice, page_size)
if "_req_filters" not in st.session_state:  # first run: the page from the URL too
    wanted_page = widgets.query_param("page") or "1"
    st.session_state.setdefault("req_page", int(wanted_page) if wanted_page.isdigit() and len(wanted_page) < 7 else 1)
elif st.session_state["_req_filters"] != signature:  # a new filter starts again at page 1
    st.session_state["req_page"] = 1
st.session_state["_req_filters"] = signature
since = (fmt.to_api_time(datetime.now(UTC) - DELTAS[range_choice]) if range_choice in DELTAS else None)
st.query_params.from_dict({k: v for k, v in {"status": status, "client": client, "range": range_choice,
                                             "page": str(st.session_state.get("req_page", 1))}.items() if v})

page = max(1, int(st.session_state.get("req_page", 1)))
result = widgets.call(api.requests, status=status or None, client_key_id=client, since=since, page=page,
                      page_size=page_size)
if result is None:
    st.stop()
pages = max(1, math.ceil(result["total"] / page_size))
st.caption(t("common.page_of", total=result["total"], page=min(page, pages), pages=pages))
items = result["items"]


def _client(item: dict[str, Any]) -> str:
    if not item.get("client_key_id"):
        return t("common.anonymous")
    return key_names.get(item["client_key_id"]) or f'{item.get("client_name") or ""} ({item.get("client_short_id") or item["client_key_id"][:8]})'


selected = None
if items:
    table = pd.DataFrame([{
        t("common.time"): fmt.when(i["created_at"], seconds=True), t("common.status"): int(i["status"]),
        t("req.error_code"): widgets.text_cell(i["error_code"]), t("common.client"): _client(i),
        t("common.model"): widgets.text_cell(i["model"]), t("common.key_source"): widgets.key_source_label(i["key_source"]),
        t("req.fallback"): widgets.text_cell(i["fallback_reason"]), t("req.upstream"): widgets.text_cell(i["upstream"]),
        t("req.latency"): int(i["latency_ms"]),
        t("common.cost_krw"): None if i["cost_krw"] is None else float(fmt.decimal(i["cost_krw"])),
        t("req.route"): i["route"], t("req.id"): i["request_id"],
    } for i in items])
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="req_table", column_config={
                             t("common.cost_krw"): st.column_config.NumberColumn(format="%.2f"),
                             t("common.status"): st.column_config.NumberColumn(format="%d")})
    rows = event.selection.rows if event is not None else []
    if rows:
        selected = items[rows[0]]
else:
    st.info(t("common.none"))
if page > pages:
    st.session_state["req_page"] = pages
st.pagination(pages, key="req_page")

st.subheader(t("req.detail"))
wanted = st.session_state.get("_req_rid")
if selected is None and wanted:
    found = widgets.call(api.request_detail, wanted)
    selected = found["item"] if found else None
if selected is None:
    st.caption(t("req.pick"))
else:
    st.query_params["rid"] = st.session_state["_req_rid"] = selected["request_id"]
    detail = widgets.call(api.request_detail, selected["request_id"]) or {"conversation_id": None}
    fields = [(t("req.id"), selected["request_id"]), (t("common.time"), fmt.when(selected["created_at"], seconds=True)),
              (t("req.route"), selected["route"]), (t("common.status"), str(selected["status"])),
              (t("req.error_code"), widgets.text_cell(selected["error_code"])), (t("common.client"), _client(selected)),
              (t("common.model"), widgets.text_cell(selected["model"])),
              (t("common.key_source"), widgets.key_source_label(selected["key_source"])),
              (t("req.fallback"), widgets.text_cell(selected["fallback_reason"])),
              (t("req.upstream"), widgets.text_cell(selected["upstream"])),
              (t("req.latency"), fmt.number(selected["latency_ms"])),
              (t("req.ttft"), "-" if selected.get("ttft_ms") is None else fmt.number(selected["ttft_ms"])),
              (t("common.cost"), widgets.cost_or_unpriced(selected["cost_usd"], selected["cost_krw"]))]
    st.dataframe(pd.DataFrame(fields, columns=["", " "]), hide_index=True, width="stretch",
                 height=widgets.table_height(len(fields)))
    conv_id = detail.get("conversation_id")
    turn = None
    if conv_id is not None:
        turns = widgets.call(api.turns, conv_id)
        turn = next((x for x in (turns or {}).get("turns", []) if x["request_id"] == selected["request_id"]), None)
    st.markdown(f'**{t("req.turn")}**')
    if turn is None:
        st.caption(t("req.no_turn"))
    else:
        with st.chat_message("user"):
            st.text(turn["prompt"])
        with st.chat_message("assistant"):
            st.text(turn["reply"])

# -- export (the current filters, newest first) --------------------------------------------------
st.divider()
widgets.export_panel(
    state_key="_req_export", signature=(status, client, range_choice),
    fetch=lambda part_until, before_id: widgets.call(api.requests_csv, status=status or None, client_key_id=client,
                                                     since=since, until=part_until, before_id=before_id,
                                                     limit=exports.part_rows()),
    name="requests", since=since, until=None, prepare_label=t("export.prepare"),
    ready=lambda prepared: t("export.ready", rows=prepared.rows, name=prepared.filename),
    download_label=t("export.download"), button_key="req_export")
