"""spend ledger: the upstream response id, so only its owner may fetch or cancel it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        batch.add_column(sa.Column('response_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch.create_index('ix_spend_response_id', ['response_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        batch.drop_index('ix_spend_response_id')
        batch.drop_column('response_id')
