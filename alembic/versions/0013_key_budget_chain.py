"""client keys: the budget a key draws on (a rotated key keeps its predecessors' spend)

A rotated key's ``budget_key_id`` names the first key of its rotation chain; its budget
counters (``key:<that id>``) are the chain's, so a rotation never resets a daily or monthly
budget. NULL: the key's own (every key issued before this revision).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('client_keys') as batch:
        batch.add_column(sa.Column('budget_key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('client_keys') as batch:
        batch.drop_column('budget_key_id')
