"""Alerts to a Slack-compatible incoming webhook (``ALERT_WEBHOOK_URL``) over httpx."""
from __future__ import annotations

import logging

import httpx

from domain.alerts import Alert

log = logging.getLogger(__name__)


class HttpxWebhookAlertSink:
    """POSTs ``alert.payload()`` as JSON. A failure is logged (without the URL, which often
    embeds a token) and reported as False; it never raises into the caller."""

    def __init__(self, url: str, *, timeout: float = 5.0, client: httpx.AsyncClient | None = None) -> None:
        self._url = url
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, alert: Alert) -> bool:
        try:
            r = await self._client.post(self._url, json=alert.payload())
        except httpx.HTTPError as exc:
            log.warning("alert webhook unreachable (%s): %s alert not delivered", type(exc).__name__, alert.kind)
            return False
        if r.status_code >= 300:
            log.warning("alert webhook answered %d: %s alert not delivered", r.status_code, alert.kind)
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
