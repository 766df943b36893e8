"""Prices: the catalogue in force and its version."""
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
    t("prices.output"): m["output"], t("prices.max_output"): m["max_output_tokens"],
} for m in data["models"]]), hide_index=True, width="stretch")
