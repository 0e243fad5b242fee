"""text pool

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Unlabelled texts an admin puts in a task's pool for the web app's label page.
    op.create_table('pool_text',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('text_id', sa.Integer(), nullable=False),
    sa.Column('item', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], ),
    sa.ForeignKeyConstraint(['text_id'], ['text.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id', 'text_id', name='uq_pool_text_task_text')
    )
    with op.batch_alter_table('pool_text', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_text_task_id'), ['task_id'], unique=False)

    # Pool texts a user skipped; the labelling queue leaves them out until the skip is undone.
    op.create_table('text_skip',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('text_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], ),
    sa.ForeignKeyConstraint(['text_id'], ['text.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'task_id', 'text_id', name='uq_text_skip_user_task_text')
    )
    with op.batch_alter_table('text_skip', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_text_skip_user_id'), ['user_id'], unique=False)

    # Automatic retraining per task: a user's job is queued after this many new labels (0: never).
    op.create_table('task_retraining',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('retrain_every', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], ),
    sa.PrimaryKeyConstraint('task_id')
    )


def downgrade() -> None:
    op.drop_table('task_retraining')
    with op.batch_alter_table('text_skip', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_text_skip_user_id'))
    op.drop_table('text_skip')
    with op.batch_alter_table('pool_text', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_text_task_id'))
    op.drop_table('pool_text')
