"""Engines. Nothing here runs at import time."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

DEFAULT_SQLITE_PATH = Path("data") / "llm_server.db"


def default_database_url() -> str:
    """``DATABASE_URL`` or an embedded SQLite file under ./data/."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return normalize_url(url)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str | None = None, *, pool_size: int = 10, pool_timeout: float = 5.0,
                synchronous_commit: bool = True) -> Engine:
    """An engine for PostgreSQL or SQLite. No pre-ping on checkout (a round trip per
    request): a dropped connection fails one query, and SQLAlchemy then invalidates the
    whole pool. ``synchronous_commit=False`` (PostgreSQL) skips the WAL flush wait on commit,
    for writes whose loss in a crash is harmless (budget holds)."""
    url = normalize_url(url or default_database_url())
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the monitor read while chat_api writes; foreign keys are off by default.
            # pysqlite's implicit transactions are disabled so BEGIN IMMEDIATE (below) works.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Take the write lock at BEGIN: the budget check-then-add must not interleave.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {} if synchronous_commit else {"options": "-c synchronous_commit=off"}
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout,
                         pool_recycle=1800, connect_args=connect_args)
