"""The console's entrypoint: language, the sign-in gate, then the pages."""
from __future__ import annotations

import streamlit as st

from admin_ui import auth
from admin_ui.i18n import LANG_KEY, LANGS, t

st.set_page_config(page_title="LLM Server", page_icon=":material/admin_panel_settings:", layout="wide")

if LANG_KEY not in st.session_state:
    st.session_state[LANG_KEY] = "ko"
st.sidebar.radio("언어 / Language", LANGS, key=LANG_KEY, horizontal=True,
                 format_func=lambda code: {"ko": "한국어", "en": "English"}[code])

if not auth.is_signed_in(st.session_state):
    st.title(t("signin.title"))
    with st.form("signin", clear_on_submit=True):
        password = st.text_input(t("signin.password"), type="password", key="signin_password")
        submitted = st.form_submit_button(t("signin.submit"), key="signin_submit")
    if submitted:
        outcome = auth.sign_in(st.session_state, password)
        del password
        if outcome == "ok":
            st.rerun()
        elif outcome == "unconfigured":
            st.error(t("signin.unconfigured"))
        elif outcome == "locked":
            st.error(t("signin.locked", seconds=int(auth.remaining_lock(st.session_state)) + 1))
        else:
            wait = auth.remaining_lock(st.session_state)
            st.error(t("signin.locked", seconds=int(wait) + 1) if wait else t("signin.wrong"))
    st.stop()

pages = [
    st.Page("app_pages/overview.py", title=t("nav.overview"), icon=":material/dashboard:", url_path="overview", default=True),
    st.Page("app_pages/conversations.py", title=t("nav.conversations"), icon=":material/forum:", url_path="conversations"),
    st.Page("app_pages/spend.py", title=t("nav.spend"), icon=":material/payments:", url_path="spend"),
    st.Page("app_pages/keys.py", title=t("nav.keys"), icon=":material/key:", url_path="keys"),
    st.Page("app_pages/host.py", title=t("nav.host"), icon=":material/monitor_heart:", url_path="host"),
    st.Page("app_pages/prices.py", title=t("nav.prices"), icon=":material/sell:", url_path="prices"),
]
current = st.navigation(pages)
if st.sidebar.button(t("signout"), key="signout"):
    auth.sign_out(st.session_state)
    st.rerun()
current.run()
