"""group turns: the index behind fair dispatch between groups (S6)

Written by hand: one partial index, so "when did this group last have a task start" is an
index lookup in the claim statement.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_tasks_group_started',
        'tasks',
        ['group_id', 'started_at'],
        postgresql_where=sa.text('started_at IS NOT NULL'),
        sqlite_where=sa.text('started_at IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_tasks_group_started', table_name='tasks')
