"""Conversations: filter, page through (server-side), open one to read its transcript.

Prompts and replies are untrusted text: they are shown with st.text (no Markdown, no HTML),
and metadata lines are Markdown-escaped."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

PAGE_SIZE = 20
api = widgets.admin()
st.title(t("conv.title"))

keys = widgets.call(api.keys)
prices = widgets.call(api.prices)
key_items = keys["items"] if keys else []
key_names = {k["id"]: f'{k["name"]} ({k["short_id"]})' for k in key_items}
# the catalogue and the operator's EXTRA_MODELS (unpriced, but conversations use them too)
models = [m["model"] for m in prices["models"]] + list(prices.get("extra_models") or []) if prices else []



def _owner(c: dict[str, str]) -> str:
    if c.get("owner_short_id"):
        return f'({c["owner_short_id"]})'
    return t("common.anonymous") if not c["owner"] else c["owner"][:8]


with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        since, until = widgets.time_range("conv", default="7d")
    client_key_id = c2.selectbox(t("common.client"), [None, *key_names], key="conv_client",
                                 format_func=lambda k: t("common.all") if k is None else key_names.get(k, k))
    model = c3.selectbox(t("common.model"), [None, *models], key="conv_model",
                         format_func=lambda m: t("common.all") if m is None else m)
    key_source = c4.selectbox(t("common.key_source"), [None, "server", "user"], key="conv_source",
                              format_func=lambda s: t("common.all") if s is None else widgets.key_source_label(s))
    q = st.text_input(t("conv.search"), key="conv_q", max_chars=200).strip()

# A new filter starts again at page 1 (the range's "since" moves with the clock: compare the choice).
signature = (st.session_state.get("conv_range"), until if st.session_state.get("conv_range") == "custom" else None,
             client_key_id, model, key_source, q)
if st.session_state.get("_conv_filters") != signature:
    st.session_state["_conv_filters"] = signature
    st.session_state["conv_page"] = 1
page = int(st.session_state.get("conv_page", 1))

result = widgets.call(api.conversations, since=since, until=until, client_key_id=client_key_id, model=model,
                      key_source=key_source, q=q or None, page=page, page_size=PAGE_SIZE)
if result is None:
    st.stop()
pages = max(1, math.ceil(result["total"] / PAGE_SIZE))
st.caption(t("conv.total", total=result["total"], page=min(page, pages), pages=pages))
items = result["items"]
if items:
    st.dataframe(pd.DataFrame([{
        "#": c["id"], t("conv.external_id"): c["external_id"],
        t("common.client"): key_names.get(c["owner"]) or _owner(c),
        t("conv.turns"): c["turn_count"], t("conv.last_model"): c["last_model"] or "-",
        t("common.cost_krw"): fmt.krw(c["cost_krw"]), t("common.cost_usd"): fmt.usd(c["cost_usd"]),
        t("conv.updated"): fmt.when(c["updated_at"]),
    } for c in items]), hide_index=True, width="stretch")
else:
    st.info(t("common.none"))
if page > pages:
    st.session_state["conv_page"] = pages
st.pagination(pages, key="conv_page")

by_id = {c["id"]: c for c in items}
opened = st.selectbox(t("conv.open"), [None, *by_id], key="conv_open", placeholder=t("conv.choose"),
                      format_func=lambda i: t("conv.choose") if i is None
                      else f'#{i} · {by_id[i]["external_id"]} · {fmt.when(by_id[i]["updated_at"])}')
if opened is not None:
    detail = widgets.call(api.turns, opened)
    if detail is not None:
        conv = detail["conversation"]
        st.subheader(t("conv.transcript", name=fmt.escape_markdown(conv["external_id"])))
        st.caption(" · ".join(fmt.escape_markdown(x) for x in (
            key_names.get(conv["owner"], conv.get("owner_short_id") or t("common.anonymous")),
            fmt.when(conv["created_at"]), f'{fmt.krw(conv["cost_krw"])} / {fmt.usd(conv["cost_usd"])}')))
        for turn in detail["turns"]:
            if turn.get("system_prompt"):
                with st.expander(f'{t("conv.system")} #{turn["turn_index"]}'):
                    st.text(turn["system_prompt"])
            with st.chat_message("user"):
                st.caption(fmt.escape_markdown(fmt.when(turn["created_at"], seconds=True)))
                st.text(turn["prompt"])
            with st.chat_message("assistant"):
                st.text(turn["reply"])
                meta = t("conv.meta", model=turn["model"], inp=turn["input_tokens"], cached=turn["cached_input_tokens"],
                         out=turn["output_tokens"],
                         cost=f'{fmt.krw(turn["cost_krw"])} ({fmt.usd(turn["cost_usd"])})'
                         if turn["cost_usd"] is not None else "-",
                         latency=fmt.number(turn["latency_ms"]) if turn["latency_ms"] is not None else "-",
                         source=widgets.key_source_label(turn["key_source"]))
                if turn.get("estimated"):
                    meta += f' · {t("conv.estimated")}'
                st.caption(fmt.escape_markdown(meta))
