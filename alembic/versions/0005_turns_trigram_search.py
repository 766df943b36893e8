"""turns: trigram indexes for the console's text search (PostgreSQL only)

An ILIKE '%word%' search cannot use a b-tree; pg_trgm's GIN indexes serve it, so a search
over all of history stays fast. SQLite (the embedded default) scans, which is fine at its
scale. The indexes live only in the database: alembic/env.py leaves them out of the
model comparison.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 01:20:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX IF NOT EXISTS ix_turns_prompt_trgm ON turns USING gin (prompt gin_trgm_ops)")
    op.execute("CREATE INDEX IF NOT EXISTS ix_turns_reply_trgm ON turns USING gin (reply gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_turns_reply_trgm")
    op.execute("DROP INDEX IF EXISTS ix_turns_prompt_trgm")
