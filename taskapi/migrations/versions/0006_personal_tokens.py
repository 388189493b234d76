"""personal access tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 06:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskapi.db import UTCDateTime


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        'personal_tokens',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('scopes', sa.String(length=100), nullable=False),
        sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_personal_tokens_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_personal_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_personal_tokens_token_hash')),
    )
    op.create_index('ix_personal_tokens_user_created', 'personal_tokens',
                    ['user_id', 'created_at'])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index('ix_personal_tokens_user_created', table_name='personal_tokens')
    op.drop_table('personal_tokens')
