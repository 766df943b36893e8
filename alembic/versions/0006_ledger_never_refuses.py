"""money integrity: ledger text columns of any length, holds as write-ahead records,
background responses awaiting their final usage

The spend ledger's identifiers, model names and codes become TEXT (a row is never refused
for what an upstream sent; indexed values are bounded in code), with an ``anomalies``
column saying what was normalised. A budget hold carries its request (id, client key, route,
model, catalogue version) so that a hold whose replica died becomes that request's ledger
row, charged at the held amount. ``background_responses`` keeps background requests whose
ledger row waits for the upstream's final usage (durable, so polling survives a restart).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SPEND_TEXT = {'request_id': 200, 'response_id': 128, 'route': 64, 'model': 100, 'fallback_reason': 32,
               'outcome': 8, 'error_code': 64, 'catalog_version': 32}
_TURN_TEXT = {'request_id': 200, 'model': 100}
_HOLD_COLUMNS = ('request_id', 'route', 'model', 'catalog_version')


def upgrade() -> None:
    with op.batch_alter_table('spend_ledger') as batch:
        for name in _SPEND_TEXT:
            batch.alter_column(name, type_=sa.Text(), existing_type=sqlmodel.sql.sqltypes.AutoString(
                length=_SPEND_TEXT[name]))
        batch.add_column(sa.Column('anomalies', sa.Text(), nullable=True))
    with op.batch_alter_table('turns') as batch:
        for name in _TURN_TEXT:
            batch.alter_column(name, type_=sa.Text(), existing_type=sqlmodel.sql.sqltypes.AutoString(
                length=_TURN_TEXT[name]))
    with op.batch_alter_table('budget_reservations') as batch:
        for name in _HOLD_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch.add_column(sa.Column('client_key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch.add_column(sa.Column('key_source', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch.create_index('ix_budget_reservations_created_at', ['created_at'], unique=False)
    op.create_table('background_responses',
                    sa.Column('response_id', sa.Text(), nullable=False),
                    sa.Column('request_id', sa.Text(), nullable=False),
                    sa.Column('client_key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
                    sa.Column('reservation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
                    sa.Column('record', sa.Text(), nullable=False),
                    sa.Column('attempts', sa.Integer(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('response_id'))
    op.create_index('ix_background_responses_next_poll_at', 'background_responses', ['next_poll_at'], unique=False)
    op.create_index('ix_background_responses_reservation_id', 'background_responses', ['reservation_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_background_responses_reservation_id', table_name='background_responses')
    op.drop_index('ix_background_responses_next_poll_at', table_name='background_responses')
    op.drop_table('background_responses')
    with op.batch_alter_table('budget_reservations') as batch:
        batch.drop_index('ix_budget_reservations_created_at')
        batch.drop_column('key_source')
        batch.drop_column('client_key_id')
        for name in reversed(_HOLD_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table('turns') as batch:
        for name, length in _TURN_TEXT.items():
            # Values longer than the old limit are cut: the old schema cannot hold them.
            batch.alter_column(name, type_=sqlmodel.sql.sqltypes.AutoString(length=length), existing_type=sa.Text(),
                               postgresql_using=f'left({name}, {length})')
    with op.batch_alter_table('spend_ledger') as batch:
        batch.drop_column('anomalies')
        for name, length in _SPEND_TEXT.items():
            batch.alter_column(name, type_=sqlmodel.sql.sqltypes.AutoString(length=length), existing_type=sa.Text(),
                               postgresql_using=f'left({name}, {length})')
