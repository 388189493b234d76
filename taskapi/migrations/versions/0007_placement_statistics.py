"""statistics: a task's list and parent decide its owner

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:30:00

PostgreSQL estimates ``owner_id = ? AND parent_id = ?`` as if the two were independent, so
with many users in the table a parent's (or a list's) page looked a few rows long, and a
bitmap scan and a sort of every subtask beat the ordered index scan that stops at the
page's end. Functional-dependency statistics tell it that the list or parent decides the
owner. SQLite has no such statistics; nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

STATISTICS = "st_tasks_placement_owner"


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (dependencies) "
        "ON owner_id, list_id, parent_id FROM tasks"
    )
    op.execute("ANALYZE tasks")


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
