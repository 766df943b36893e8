"""Configuration from the environment (and .env). Read once, in ``run()`` or by the caller of
``make_app``; nothing here is read at import time."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None  # None: domain's default (SQLite under ./data/)
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 8002
    log_level: str = "INFO"
    usd_krw_rate: Decimal = Decimal("1400")
    budget_timezone: str = "Asia/Seoul"  # budget days and months (the chat_api's setting)
    chat_api_url: str = "http://127.0.0.1:8001"
    chat_api_timeout_seconds: float = 0.5
    # Pid files ``<service>.pid`` of the stack's processes (written by `make dev`).
    stack_pid_dir: Path = Path("data") / "run"
    # DB-derived metric families are reused for this long, so a burst of scrapes costs one query.
    metrics_cache_seconds: float = 2.0
    cpu_sample_seconds: float = 1.0
    disk_path: str = "/"
