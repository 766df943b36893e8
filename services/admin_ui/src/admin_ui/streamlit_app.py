"""The console's entrypoint: language, the sign-in gate (or a still-valid session cookie),
then the pages."""
from __future__ import annotations

import streamlit as st

from admin_ui import api, auth, session_cookie
from admin_ui.i18n import LANG_KEY, LANGS, t

st.set_page_config(page_title="LLM Server", page_icon=":material/admin_panel_settings:", layout="wide")

SET_COOKIE = "_set_session_cookie"
SIGNED_OUT = "_signed_out"


def _cookies() -> dict[str, str]:
    try:
        return dict(st.context.cookies)
    except Exception:  # no request context (a bare script run)
        return {}


if LANG_KEY not in st.session_state:
    saved = _cookies().get(session_cookie.LANG_COOKIE)
    st.session_state[LANG_KEY] = saved if saved in LANGS else "ko"
st.sidebar.radio("언어 / Language", LANGS, key=LANG_KEY, horizontal=True,
                 format_func=lambda code: {"ko": "한국어", "en": "English"}[code])

# Keep the language for the next visit and tell the browser the page's language (Streamlit's
# page says lang="en" whatever is shown).
script = session_cookie.set_cookie_script(session_cookie.LANG_COOKIE, st.session_state[LANG_KEY], 365 * 86400)
script += f"<script>window.parent.document.documentElement.lang = '{st.session_state[LANG_KEY]}';</script>"
if st.session_state.get(SET_COOKIE):
    script += session_cookie.set_cookie_script(session_cookie.COOKIE, st.session_state.pop(SET_COOKIE),
                                               session_cookie.SESSION_SECONDS)
if st.session_state.get(SIGNED_OUT):
    script += session_cookie.set_cookie_script(session_cookie.COOKIE, "", 0)
with st.sidebar:
    st.iframe(script, height=1)

if (not auth.is_signed_in(st.session_state) and not st.session_state.get(SIGNED_OUT)
        and session_cookie.valid(_cookies().get(session_cookie.COOKIE))):
    # A reload, a deep link or a new tab of a signed-in browser: the signed cookie proves it.
    st.session_state[auth.SIGNED_IN] = True

if not auth.is_signed_in(st.session_state):
    st.title(t("signin.title"))
    with st.form("signin", clear_on_submit=True):
        password = st.text_input(t("signin.password"), type="password", key="signin_password")
        submitted = st.form_submit_button(t("signin.submit"), key="signin_submit")
    if submitted:
        outcome = auth.sign_in(st.session_state, password)
        del password
        if outcome == "ok":
            st.session_state.pop(SIGNED_OUT, None)
            st.session_state[SET_COOKIE] = session_cookie.issue()
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
    st.Page("app_pages/requests.py", title=t("nav.requests"), icon=":material/list_alt:", url_path="requests"),
    st.Page("app_pages/conversations.py", title=t("nav.conversations"), icon=":material/forum:", url_path="conversations"),
    st.Page("app_pages/spend.py", title=t("nav.spend"), icon=":material/payments:", url_path="spend"),
    st.Page("app_pages/keys.py", title=t("nav.keys"), icon=":material/key:", url_path="keys"),
    st.Page("app_pages/audit.py", title=t("nav.audit"), icon=":material/history:", url_path="audit"),
    st.Page("app_pages/host.py", title=t("nav.host"), icon=":material/monitor_heart:", url_path="host"),
    st.Page("app_pages/prices.py", title=t("nav.prices"), icon=":material/sell:", url_path="prices"),
]
current = st.navigation(pages)


def _banner() -> None:
    """Is anything broken right now? On every page: the last 15 minutes' error share."""
    try:
        now = api.admin_api().now()
    except api.ApiError:
        return  # the page itself says that the admin API cannot be reached
    total, errors = int(now.get("requests") or 0), int(now.get("errors") or 0)
    threshold = float(now.get("error_rate_threshold") or 0.2)
    if total >= 5 and errors / total > threshold:
        st.warning(t("banner.errors", rate=f"{errors / total:.0%}", errors=errors, total=total))


_banner()
if st.sidebar.button(t("signout"), key="signout"):
    auth.sign_out(st.session_state)
    st.session_state[SIGNED_OUT] = True  # and the cookie is cleared on the next run
    st.rerun()
current.run()
