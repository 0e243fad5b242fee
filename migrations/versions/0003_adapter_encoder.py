"""adapter encoder reference

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:30:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The task prior version a user's head reads (its encoder); a version others read cannot be deleted.
    with op.batch_alter_table('adapter_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('encoder_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_adapter_version_encoder', 'adapter_version', ['encoder_version_id'], ['id'])
        batch_op.create_index('ix_adapter_version_encoder_version_id', ['encoder_version_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('adapter_version', schema=None) as batch_op:
        batch_op.drop_index('ix_adapter_version_encoder_version_id')
        batch_op.drop_constraint('fk_adapter_version_encoder', type_='foreignkey')
        batch_op.drop_column('encoder_version_id')
