"""the recipe chosen for a task (or pinned by an admin)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Whole-task training's choice: the winner, every candidate's validation figures and seconds, and a pin.
    # A plain ADD COLUMN: SQLite's batch mode would copy the task table, which other tables reference.
    op.add_column('task', sa.Column('recipe', sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite 3.35+ drops a column in place (no copy of the table)
        op.execute("ALTER TABLE task DROP COLUMN recipe")
    else:
        op.drop_column('task', 'recipe')
