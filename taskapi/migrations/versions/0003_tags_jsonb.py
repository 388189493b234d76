"""tags as jsonb with a GIN index on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: existing tags are converted in place (json to jsonb)."""
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE tasks ALTER COLUMN tags TYPE jsonb USING tags::jsonb')
    op.execute('CREATE INDEX ix_tasks_tags_gin ON tasks USING gin (tags jsonb_path_ops)')


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP INDEX ix_tasks_tags_gin')
    op.execute('ALTER TABLE tasks ALTER COLUMN tags TYPE json USING tags::json')
