"""client keys: their own personal-data policy; spend ledger: personal data found per kind

``client_keys.pii_policy`` (off | mask | block, NULL: the server's PII_POLICY) and
``spend_ledger.pii_counts`` (JSON text such as '{"phone":2}': counts per kind, never a value).

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30 03:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('client_keys') as batch:
        batch.add_column(sa.Column('pii_policy', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
    with op.batch_alter_table('spend_ledger') as batch:
        batch.add_column(sa.Column('pii_counts', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        batch.drop_column('pii_counts')
    with op.batch_alter_table('client_keys') as batch:
        batch.drop_column('pii_policy')
