"""`chat-api`: serve the app with uvicorn."""
from __future__ import annotations

import sys

import uvicorn

from chat_api.log_redaction import logging_config
from chat_api.settings import ChatApiSettings
from chat_api.upstream_config import configured_upstreams
from domain.adapters.prices import load_price_catalog
from domain.adapters.upstreams import UpstreamConfigError


def run() -> None:
    settings = ChatApiSettings()
    try:  # a configuration problem is one clear line, before the server starts
        configured_upstreams(settings, load_price_catalog(settings.price_catalog_path))
    except UpstreamConfigError as exc:
        print(f"chat-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.run("chat_api.app:make_app", factory=True, host=settings.chat_api_host, port=settings.chat_api_port,
                log_level=settings.log_level.lower(), log_config=logging_config(settings.log_level),
                access_log=False, proxy_headers=True, timeout_graceful_shutdown=30, loop="uvloop", http="httptools")
