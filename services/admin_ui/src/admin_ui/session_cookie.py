"""Sign-ins that survive a reload, a deep link and a new tab: a signed, expiring cookie.

Streamlit keeps ``st.session_state`` per browser connection, so a reload used to sign the
operator out. After a successful sign-in the console sets a cookie holding a token signed
with a key derived from the operator password and the admin token (itsdangerous, HMAC-SHA256,
with its issue time); each new session reads it from ``st.context.cookies`` and, if the
signature holds and it is younger than ``SESSION_SECONDS``, starts signed in. Changing the
password invalidates every token. Streamlit cannot set response headers, so the cookie is
written by a one-line script in a same-origin component frame (``SameSite=Strict``, path
``/``). The language choice is kept in a second, unsigned cookie.
"""
from __future__ import annotations

import hashlib
import json
import secrets

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from domain.adapters.secret_files import configured_secret

COOKIE = "llm_console_session"
LANG_COOKIE = "llm_console_lang"
SESSION_SECONDS = 12 * 3600


def _signer() -> TimestampSigner | None:
    password = configured_secret("ADMIN_PASSWORD", "admin_password")
    if not password:
        return None
    token = configured_secret("ADMIN_TOKEN", "admin_token") or ""
    key = hashlib.sha256(f"console-session\0{password}\0{token}".encode()).digest()
    return TimestampSigner(key, salt="llm-console-session", digest_method=hashlib.sha256)


def issue() -> str | None:
    """A new session token (random, signed, timestamped), or None when no password is set."""
    signer = _signer()
    return None if signer is None else signer.sign(secrets.token_urlsafe(16)).decode()


def valid(token: str | None, max_age: int = SESSION_SECONDS) -> bool:
    signer = _signer()
    if not token or signer is None or len(token) > 200:
        return False
    try:
        signer.unsign(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return False
    return True


def set_cookie_script(name: str, value: str, max_age: int) -> str:
    """The component document that sets (or, with max_age 0, clears) a cookie on the
    console's own origin."""
    cookie = f"{name}={value}; path=/; max-age={int(max_age)}; SameSite=Strict"
    return f"<script>window.parent.document.cookie = {json.dumps(cookie)};</script>"
