"""HTTP clients for the admin API (chat_api ``/admin/v1``) and the monitor.

Configuration comes from the environment when a client is made, never at import:
CHAT_API_URL, MONITOR_URL, and the admin token from ADMIN_TOKEN or DATA_DIR/admin_token.
The token is sent as a bearer header and never returned to, or shown by, the console.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from domain.adapters.secret_files import configured_secret

DEFAULT_CHAT_API_URL = "http://127.0.0.1:8001"
DEFAULT_MONITOR_URL = "http://127.0.0.1:8002"
# A page's data is read in a few calls, one after another: each may wait this long for an
# answer before the page says the service cannot be reached. Exports and changes (a key's
# creation must not be reported as failed while it is being made) wait longer.
READ_TIMEOUT = 5.0
LONG_TIMEOUT = 15.0


class _Silent:
    """Services that let a call time out: for as long as one call may wait, further calls to
    them fail at once, so a page with several calls is not blank for the sum of their
    timeouts (shared by every session of this process; a refused connection is instant and
    is not remembered)."""

    def __init__(self, window: float) -> None:
        self._window, self._until, self._lock = window, dict[str, float](), threading.Lock()

    def silent(self, base_url: str) -> bool:
        with self._lock:
            return self._until.get(base_url, 0.0) > time.monotonic()

    def timed_out(self, base_url: str) -> None:
        with self._lock:
            self._until[base_url] = time.monotonic() + self._window


_silent = _Silent(window=READ_TIMEOUT)


class ApiError(Exception):
    """A failed call, with a message safe to show (status and the API's error code only)."""

    def __init__(self, status: int | None, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Endpoints:
    chat_api_url: str
    monitor_url: str

    @classmethod
    def from_env(cls) -> Endpoints:
        return cls(os.environ.get("CHAT_API_URL", DEFAULT_CHAT_API_URL).rstrip("/"),
                   os.environ.get("MONITOR_URL", DEFAULT_MONITOR_URL).rstrip("/"))


def _clean(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None and v != ""}


@dataclass
class AdminApi:
    """The admin API, one method per route of docs/admin-api.md."""

    base_url: str
    token: str | None = field(repr=False)
    timeout: float = READ_TIMEOUT  # page data
    long_timeout: float = LONG_TIMEOUT  # exports (CSV) and changes

    def _client(self, timeout: float) -> httpx.Client:
        # Audit entries name the console as the actor (one operator password: no user names).
        headers = {"Accept-Language": "ko", "X-Admin-Actor": "console"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              json: dict[str, Any] | None = None) -> Any:
        if not self.token:
            raise ApiError(None, "no_admin_token")
        if _silent.silent(self.base_url):
            raise ApiError(None, "unreachable", "timed out just before")
        timeout = self.timeout if method == "GET" and not path.endswith(".csv") else self.long_timeout
        try:
            with self._client(timeout) as client:
                r = client.request(method, path, params=_clean(params), json=json)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and timeout == self.timeout:
                _silent.timed_out(self.base_url)  # a short read: not a long export still running
            raise ApiError(None, "unreachable", type(exc).__name__) from None
        if r.status_code >= 400:
            code, message = f"http_{r.status_code}", ""
            try:
                detail = r.json().get("detail")
                if isinstance(detail, dict):
                    code, message = str(detail.get("code", code)), str(detail.get("message", ""))
            except ValueError:
                pass
            raise ApiError(r.status_code, code, message)
        return r.content if path.endswith(".csv") else r.json()

    def now(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/now")  # type: ignore[no-any-return]

    def timeseries(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/timeseries", params=params)  # type: ignore[no-any-return]

    def pii(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/pii", params=params)  # type: ignore[no-any-return]

    def set_pii_policy(self, key_id: str, policy: str | None) -> dict[str, Any]:
        return self._call("PUT", f"/admin/v1/keys/{_segment(key_id)}/pii-policy",  # type: ignore[no-any-return]
                          json={"pii_policy": policy})

    def requests(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/requests", params=params)  # type: ignore[no-any-return]

    def request_detail(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/v1/requests/{_segment(request_id)}")  # type: ignore[no-any-return]

    def requests_csv(self, **params: Any) -> bytes:
        return self._call("GET", "/admin/v1/requests.csv", params=params)  # type: ignore[no-any-return]

    def audit(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/audit", params=params)  # type: ignore[no-any-return]

    def alerts(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/alerts")  # type: ignore[no-any-return]

    def overview(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/overview")  # type: ignore[no-any-return]

    def conversations(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/conversations", params=params)  # type: ignore[no-any-return]

    def turns(self, conversation_id: int) -> dict[str, Any]:
        return self._call("GET", f"/admin/v1/conversations/{int(conversation_id)}/turns")  # type: ignore[no-any-return]

    def spend(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/spend", params=params)  # type: ignore[no-any-return]

    def ledger_csv(self, **params: Any) -> bytes:
        return self._call("GET", "/admin/v1/spend/ledger.csv", params=params)  # type: ignore[no-any-return]

    def keys(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/keys")  # type: ignore[no-any-return]

    def create_key(self, name: str, daily_limit_usd: str | None, monthly_limit_usd: str | None,
                   may_use_server_key: bool, pii_policy: str | None = None,
                   expires_at: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "daily_limit_usd": daily_limit_usd,
                                "monthly_limit_usd": monthly_limit_usd, "may_use_server_key": may_use_server_key}
        if pii_policy is not None:  # unset: the server's PII_POLICY
            body["pii_policy"] = pii_policy
        if expires_at is not None:  # unset: never expires
            body["expires_at"] = expires_at
        return self._call("POST", "/admin/v1/keys", json=body)  # type: ignore[no-any-return]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/v1/keys/{_segment(key_id)}/revoke")  # type: ignore[no-any-return]

    def set_expiry(self, key_id: str, expires_at: str | None) -> dict[str, Any]:
        return self._call("PUT", f"/admin/v1/keys/{_segment(key_id)}/expiry",  # type: ignore[no-any-return]
                          json={"expires_at": expires_at})

    def rotate_key(self, key_id: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/v1/keys/{_segment(key_id)}/rotate")  # type: ignore[no-any-return]

    def set_budget(self, key_id: str, daily_limit_usd: str | None, monthly_limit_usd: str | None) -> dict[str, Any]:
        return self._call("PUT", f"/admin/v1/keys/{_segment(key_id)}/budget",  # type: ignore[no-any-return]
                          json={"daily_limit_usd": daily_limit_usd, "monthly_limit_usd": monthly_limit_usd})

    def prices(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/prices")  # type: ignore[no-any-return]

    def upstreams(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/upstreams")  # type: ignore[no-any-return]


def _segment(value: str) -> str:
    return quote(value, safe="")


@dataclass
class MonitorApi:
    """The monitor's public system routes, and health probes of the services."""

    base_url: str
    chat_api_url: str
    timeout: float = READ_TIMEOUT

    def system(self, part: str) -> dict[str, Any]:
        try:
            r = httpx.get(f"{self.base_url}/api/v1/system/{part}", timeout=self.timeout)
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            raise ApiError(status, "monitor_unavailable") from None

    def health(self) -> list[dict[str, Any]]:
        """Each service's health probe: name, url path, ok, HTTP status, latency in ms; and
        the database as chat_api's readiness probe sees it (``database: up|down``)."""
        probes = [("chat_api", self.chat_api_url, "/healthz"), ("chat_api (ready)", self.chat_api_url, "/readyz"),
                  ("monitor", self.base_url, "/api/v1/system/health")]
        out = []
        database: dict[str, Any] | None = None
        for name, base, path in probes:
            started = time.perf_counter()
            status: int | None = None
            body: Any = None
            try:
                if not _silent.silent(base):  # else: down, as it timed out just before
                    r = httpx.get(base + path, timeout=self.timeout)
                    status = r.status_code
                    body = r.json() if path == "/readyz" else None
            except httpx.TimeoutException:
                if path == "/healthz":  # liveness does no work: not answering it is frozen
                    _silent.timed_out(base)
            except (httpx.HTTPError, ValueError):
                pass
            latency = round((time.perf_counter() - started) * 1000)
            out.append({"service": name, "path": path, "ok": status is not None and status < 400, "status": status,
                        "latency_ms": latency})
            if isinstance(body, dict) and body.get("database") in ("up", "down"):
                database = {"service": "database", "path": path, "ok": body["database"] == "up", "status": status,
                            "latency_ms": latency}
        if database is None:  # chat_api did not say: its readiness probe is all we know
            database = {**out[1], "service": "database", "ok": out[1]["ok"]}
        out.append(database)
        return out


def admin_api() -> AdminApi:
    return AdminApi(Endpoints.from_env().chat_api_url, configured_secret("ADMIN_TOKEN", "admin_token"))


def monitor_api() -> MonitorApi:
    ends = Endpoints.from_env()
    return MonitorApi(ends.monitor_url, ends.chat_api_url)
