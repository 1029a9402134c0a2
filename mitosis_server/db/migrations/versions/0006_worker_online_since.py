"""worker online_since: when a worker registered or came back from lost

Written by hand: one nullable column (rows from before it read as "unknown").

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import mitosis_server.db.models

UTC = mitosis_server.db.models.UTCDateTime(timezone=True)

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workers') as batch:
        batch.add_column(sa.Column('online_since', UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workers') as batch:
        batch.drop_column('online_since')
