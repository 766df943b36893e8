"""Fixtures for the adapter tests: the same behaviour on PostgreSQL and SQLite."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from domain.adapters.sql.database import make_engine


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request) -> str:
    """A migrated database: the session's PostgreSQL one (shared: use unique ids), or a
    fresh SQLite file."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
