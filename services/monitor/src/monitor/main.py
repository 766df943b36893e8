"""``monitor`` console script."""
from __future__ import annotations

import uvicorn

from domain.adapters.log_redaction import logging_config
from monitor.app import make_app
from monitor.settings import MonitorSettings


def run() -> None:
    settings = MonitorSettings()
    uvicorn.run(make_app(settings), host=settings.monitor_host, port=settings.monitor_port,
                log_level=settings.log_level.lower(), log_config=logging_config(settings.log_level))
