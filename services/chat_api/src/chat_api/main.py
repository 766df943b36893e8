"""`chat-api`: serve the app with uvicorn."""
from __future__ import annotations

import uvicorn

from chat_api.log_redaction import logging_config
from chat_api.settings import ChatApiSettings


def run() -> None:
    settings = ChatApiSettings()
    uvicorn.run("chat_api.app:make_app", factory=True, host=settings.chat_api_host, port=settings.chat_api_port,
                log_level=settings.log_level.lower(), log_config=logging_config(settings.log_level),
                access_log=False, proxy_headers=True, timeout_graceful_shutdown=30, loop="uvloop", http="httptools")
