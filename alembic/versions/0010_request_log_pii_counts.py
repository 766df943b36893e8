"""request log: personal data the guard found in each request, per kind

``request_log.pii_counts`` (JSON text such as '{"card":2,"rrn":1}': counts per kind, never a
value; NULL when nothing was found). Unlike the ledger's column it is filled for requests
refused under ``block`` too.

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-30 06:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('request_log') as batch:
        batch.add_column(sa.Column('pii_counts', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request_log') as batch:
        batch.drop_column('pii_counts')
