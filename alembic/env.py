"""Migrations run against SQLModel.metadata from domain.adapters; the URL comes from
DATABASE_URL (or the -x url=... / config attribute set by llmctl and tests)."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import domain.adapters.sql.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from domain.adapters.sql.database import default_database_url, make_engine, normalize_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata

# Indexes that exist only in PostgreSQL, made by hand in a migration (see 0005): not drift.
DATABASE_ONLY_INDEXES = {"ix_turns_prompt_trgm", "ix_turns_reply_trgm"}


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return not (type_ == "index" and reflected and name in DATABASE_ONLY_INDEXES)


def _url() -> str:
    return normalize_url(config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
                         or default_database_url())


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True,
                      render_as_batch=True, include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                          render_as_batch=connection.dialect.name == "sqlite", include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
