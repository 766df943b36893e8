"""request log: time to first token of streamed answers (the console's "now" view)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and without a default: adding it rewrites nothing, and a non-streamed answer
    # (or a refusal) has no first token.
    with op.batch_alter_table('request_log') as batch:
        batch.add_column(sa.Column('ttft_ms', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request_log') as batch:
        batch.drop_column('ttft_ms')
