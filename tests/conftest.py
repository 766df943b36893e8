"""Shared fixtures: a fresh Postgres database per run, SQLite files, the fake OpenAI server."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.database import create_database, drop_database, migrate
from tests.support.processes import start_fake_openai, stop


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database for this run, migrated to head, dropped afterwards."""
    url = create_database()
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty, unmigrated PostgreSQL database for one test."""
    url = create_database("llm_fresh")
    yield url
    drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'llm.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[str]:
    """The project's fake OpenAI server on a free loopback port; yields its /v1 base URL."""
    proc, base = start_fake_openai()
    yield base
    stop(proc)
