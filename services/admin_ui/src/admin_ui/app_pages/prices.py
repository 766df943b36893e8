"""Prices: the catalogue in force and its version, and the operator's EXTRA_MODELS (unpriced)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from admin_ui import formatting as fmt
from admin_ui import widgets
from admin_ui.i18n import t

st.title(t("prices.title"))
data = widgets.call(widgets.admin().prices)
if data is None:
    st.stop()
st.markdown(f"**{t('prices.version', version=fmt.escape_markdown(data['version']))}** · {t('prices.unit')}")
st.dataframe(pd.DataFrame([{
    t("common.model"): m["model"], t("prices.input"): m["input"], t("prices.cached"): m["cached_input"] or "-",
    # text, so an extra model's cell reads '-' (a number column would show 'None')
    t("prices.output"): m["output"], t("prices.max_output"): f'{int(m["max_output_tokens"]):,}'
    if m.get("max_output_tokens") else "-",
} for m in data["models"]] + [{
    # allowed by the operator, outside the catalogue: recorded as unpriced, never as ₩0
    t("common.model"): name, t("prices.input"): t("common.unpriced"), t("prices.cached"): t("common.unpriced"),
    t("prices.output"): t("common.unpriced"), t("prices.max_output"): "-",
} for name in data.get("extra_models") or []]), hide_index=True, width="stretch",
    height=widgets.table_height(len(data["models"]) + len(data.get("extra_models") or [])))
if data.get("extra_models"):
    st.caption(t("prices.extra") + ": " + fmt.escape_markdown(", ".join(data["extra_models"])))
