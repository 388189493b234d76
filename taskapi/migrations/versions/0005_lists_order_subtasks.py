"""lists, manual order, subtasks and recurrence: every user gets an inbox holding their tasks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 06:00:00

Existing tasks move into their owner's new inbox with positions that keep today's default
order (newest first), and each moved task (and the inbox) gets a new change number and a new
version, so a client syncing incrementally learns its list and position, and a cached body
(If-None-Match) is not answered 304 without them. Rows are read and written in
bounded batches, so memory does not grow with the table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op
from fractional_indexing import generate_key_between, generate_n_keys_between

from taskapi.db import UTCDateTime


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 5_000  # tasks per UPDATE
USER_BATCH = 1_000  # users read at a time
POSITION = sa.String(255).with_variant(sa.String(255, collation='C'), 'postgresql')

users = sa.table('users', sa.column('id', sa.Uuid()), sa.column('change_seq', sa.BigInteger()))
lists = sa.table(
    'lists',
    sa.column('id', sa.Uuid()), sa.column('owner_id', sa.Uuid()), sa.column('title', sa.String()),
    sa.column('position', sa.String()), sa.column('inbox', sa.Boolean()),
    sa.column('created_at', UTCDateTime(timezone=True)),
    sa.column('updated_at', UTCDateTime(timezone=True)),
    sa.column('version', sa.Integer()), sa.column('change_seq', sa.BigInteger()),
)
tasks = sa.table(
    'tasks',
    sa.column('id', sa.Uuid()), sa.column('owner_id', sa.Uuid()),
    sa.column('created_at', UTCDateTime(timezone=True)), sa.column('list_id', sa.Uuid()),
    sa.column('position', sa.String()), sa.column('change_seq', sa.BigInteger()),
    sa.column('version', sa.Integer()),
)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        'lists',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('title', sa.String(length=100), nullable=False),
        sa.Column('color', sa.String(length=7), nullable=True),
        sa.Column('position', POSITION, nullable=False),
        sa.Column('inbox', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('change_seq', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_lists_owner_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_lists')),
    )
    op.create_index('ix_lists_owner_position', 'lists', ['owner_id', 'position', 'id'])
    op.create_index('ix_lists_owner_change', 'lists', ['owner_id', 'change_seq'])
    op.create_index('uq_lists_owner_inbox', 'lists', ['owner_id'], unique=True,
                    sqlite_where=sa.text('inbox'), postgresql_where=sa.text('inbox'))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('list_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('parent_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('position', POSITION, nullable=True))
        batch_op.add_column(sa.Column('recurrence', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('next_occurrence_id', sa.Uuid(), nullable=True))
    with op.batch_alter_table('task_tombstones', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=8), server_default='task',
                                      nullable=False))

    # A caller (the migration test) may pass smaller batches, to cross batch boundaries.
    sizes = context.config.attributes.get('taskapi_batch_sizes', {})
    _move_tasks_into_inboxes(op.get_bind(), sizes.get('users', USER_BATCH),
                             sizes.get('tasks', BATCH))

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.alter_column('list_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.alter_column('position', existing_type=POSITION, nullable=False)
        batch_op.create_foreign_key(op.f('fk_tasks_list_id_lists'), 'lists', ['list_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_foreign_key(op.f('fk_tasks_parent_id_tasks'), 'tasks', ['parent_id'],
                                    ['id'], ondelete='CASCADE')
        # Partial: PostgreSQL reads (position, id) order out of an index only after equality
        # conditions, and parent_id IS NULL is not one (see the model).
        batch_op.create_index('ix_tasks_list_position', ['list_id', 'position', 'id'],
                              sqlite_where=sa.text('parent_id IS NULL'),
                              postgresql_where=sa.text('parent_id IS NULL'))
        batch_op.create_index('ix_tasks_parent_position', ['parent_id', 'position', 'id'],
                              sqlite_where=sa.text('parent_id IS NOT NULL'),
                              postgresql_where=sa.text('parent_id IS NOT NULL'))
        batch_op.create_index('ix_tasks_list', ['list_id'])


def _move_tasks_into_inboxes(connection: sa.Connection, user_batch: int, batch: int) -> None:
    """An inbox for every user, holding their tasks newest first; users in batches."""
    now = datetime.now(UTC)
    after: uuid.UUID | None = None
    while True:
        query = sa.select(users.c.id, users.c.change_seq).order_by(users.c.id).limit(user_batch)
        if after is not None:
            query = query.where(users.c.id > after)
        found = connection.execute(query).all()
        if not found:
            return
        for user_id, change_seq in found:
            _move_one_user(connection, user_id, change_seq, now, batch)
        after = found[-1][0]


def _move_one_user(
    connection: sa.Connection, user_id: uuid.UUID, change_seq: int, now: datetime, batch: int
) -> None:
    """Create the user's inbox and number their tasks into it, ``batch`` rows at a time."""
    inbox = uuid.uuid4()
    connection.execute(sa.insert(lists).values(
        id=inbox, owner_id=user_id, title='Inbox', position=generate_key_between(None, None),
        inbox=True, created_at=now, updated_at=now, version=1, change_seq=change_seq + 1,
    ))
    seq, last_key = change_seq + 1, None
    cursor: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = (
            sa.select(tasks.c.id, tasks.c.created_at)
            .where(tasks.c.owner_id == user_id)
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
            .limit(batch)
        )
        if cursor is not None:
            query = query.where(sa.tuple_(tasks.c.created_at, tasks.c.id) < sa.tuple_(*cursor))
        rows = connection.execute(query).all()
        if not rows:
            break
        keys = generate_n_keys_between(last_key, None, len(rows))
        connection.execute(
            sa.update(tasks).where(tasks.c.id == sa.bindparam('task_id')).values(
                list_id=inbox, position=sa.bindparam('key'), change_seq=sa.bindparam('seq'),
                version=tasks.c.version + 1,
            ),
            [{'task_id': row.id, 'key': key, 'seq': seq + 1 + i}
             for i, (row, key) in enumerate(zip(rows, keys, strict=True))],
        )
        seq, last_key, cursor = seq + len(rows), keys[-1], (rows[-1].created_at, rows[-1].id)
    connection.execute(sa.update(users).where(users.c.id == user_id).values(change_seq=seq))


def downgrade() -> None:
    """Revert this revision (lists are dropped; tasks keep everything else)."""
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_list')
        batch_op.drop_index('ix_tasks_parent_position')
        batch_op.drop_index('ix_tasks_list_position')
        batch_op.drop_constraint(op.f('fk_tasks_parent_id_tasks'), type_='foreignkey')
        batch_op.drop_constraint(op.f('fk_tasks_list_id_lists'), type_='foreignkey')
        batch_op.drop_column('next_occurrence_id')
        batch_op.drop_column('timezone')
        batch_op.drop_column('recurrence')
        batch_op.drop_column('position')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('list_id')
    with op.batch_alter_table('task_tombstones', schema=None) as batch_op:
        batch_op.drop_column('kind')
    op.drop_index('uq_lists_owner_inbox', table_name='lists')
    op.drop_index('ix_lists_owner_change', table_name='lists')
    op.drop_index('ix_lists_owner_position', table_name='lists')
    op.drop_table('lists')
