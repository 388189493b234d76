"""task quota counter, session keyset index, trigram search indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_count', sa.Integer(), server_default='0', nullable=False))
    op.execute(
        "UPDATE users SET task_count = "
        "(SELECT count(*) FROM tasks WHERE tasks.owner_id = users.id)"
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_user_id')
        batch_op.create_index('ix_sessions_user_created', ['user_id', 'created_at', 'id'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.create_index('ix_tasks_title_trgm', 'tasks', ['title'], postgresql_using='gin',
                        postgresql_ops={'title': 'gin_trgm_ops'})
        op.create_index('ix_tasks_notes_trgm', 'tasks', ['notes'], postgresql_using='gin',
                        postgresql_ops={'notes': 'gin_trgm_ops'})


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_tasks_notes_trgm', table_name='tasks')
        op.drop_index('ix_tasks_title_trgm', table_name='tasks')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_user_created')
        batch_op.create_index('ix_sessions_user_id', ['user_id'], unique=False)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('task_count')
