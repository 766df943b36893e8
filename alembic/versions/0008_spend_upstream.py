"""spend ledger: the upstream that served each request, and the calls it took (upstream routing)

Revision ID: 0008
Revises: 0009
Create Date: 2026-11-30 02:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        batch.add_column(sa.Column('upstream', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('upstream_attempts', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        batch.drop_column('upstream_attempts')
        batch.drop_column('upstream')
