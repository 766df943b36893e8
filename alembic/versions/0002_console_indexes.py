"""console indexes: conversations by owner and time, spend by key source and time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_conversations_owner_updated', 'conversations', ['owner', 'updated_at'], unique=False)
    op.create_index('ix_spend_key_source_created', 'spend_ledger', ['key_source', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_spend_key_source_created', table_name='spend_ledger')
    op.drop_index('ix_conversations_owner_updated', table_name='conversations')
