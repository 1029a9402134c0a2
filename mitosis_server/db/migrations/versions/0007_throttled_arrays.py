"""throttled arrays: the index behind the claim's look for ``%N`` arrays with ready tasks

Written by hand: one partial index, so finding the throttled arrays with ready tasks reads
those tasks only. Without it SQLite walked the whole ``array_id`` index (every task ever
submitted) inside the claim's write transaction: 100 ms per fetch over 1,000,000 finished
tasks, during which no submission could commit.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

READY_THROTTLED = "state = 'ready' AND array_limit IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        'ix_tasks_ready_throttled',
        'tasks',
        ['array_id', 'array_limit'],
        postgresql_where=sa.text(READY_THROTTLED),
        sqlite_where=sa.text(READY_THROTTLED),
    )


def downgrade() -> None:
    op.drop_index('ix_tasks_ready_throttled', table_name='tasks')
