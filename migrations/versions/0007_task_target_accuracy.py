"""task target accuracy for served abstention

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:10:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Predictions abstain below the confidence at which a version's validation rows reach this accuracy.
    # A plain ADD COLUMN: SQLite's batch mode would copy the task table, which other tables reference.
    op.add_column('task', sa.Column('target_accuracy', sa.Float(), nullable=False, server_default='0.9'))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite 3.35+ drops a column in place (no copy of the table)
        op.execute("ALTER TABLE task DROP COLUMN target_accuracy")
    else:
        op.drop_column('task', 'target_accuracy')
