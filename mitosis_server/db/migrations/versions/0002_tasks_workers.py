"""tasks and workers

Tasks with their tags, labels, attempts and (for workflows) dependencies; workers with their
tags, labels and group grants; a per-group task counter. The two dispatch indexes are
written by hand: autogenerate cannot compare expression indexes (``priority DESC``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:32:56.006993
"""

import sqlalchemy as sa
from alembic import op

import mitosis_server.db.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('creator_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('drain', sa.Boolean(), nullable=False),
    sa.Column('shutdown', sa.String(length=16), nullable=True),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('created_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_heartbeat', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['creator_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_creator_id'), ['creator_id'], unique=False)
        batch_op.create_index('ix_workers_state_heartbeat', ['state', 'last_heartbeat'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('creator_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('command_line', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('timeout', sa.Float(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('signal', sa.Integer(), nullable=True),
    sa.Column('created_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deadline_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
    sa.Column('array_id', sa.Uuid(), nullable=True),
    sa.Column('array_index', sa.Integer(), nullable=True),
    sa.Column('upstream_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rerun_of_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['creator_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ),
    sa.ForeignKeyConstraint(['rerun_of_id'], ['tasks.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['upstream_id'], ['tasks.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('group_id', 'seq', name='uq_tasks_group_seq'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_array_id'), ['array_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_creator_id'), ['creator_id'], unique=False)
        batch_op.create_index('ix_tasks_group_created', ['group_id', 'created_at'], unique=False)
        batch_op.create_index('ix_tasks_group_id', ['group_id', 'id'], unique=False)
        batch_op.create_index('ix_tasks_group_state', ['group_id', 'state', 'id'], unique=False)
        batch_op.create_index('ix_tasks_running_deadline', ['deadline_at'], unique=False, postgresql_where=sa.text("state = 'running'"), sqlite_where=sa.text("state = 'running'"))
        batch_op.create_index(batch_op.f('ix_tasks_upstream_id'), ['upstream_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_worker_id'), ['worker_id'], unique=False)

    op.create_table('worker_grants',
    sa.Column('worker_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('worker_id', 'group_id')
    )
    with op.batch_alter_table('worker_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_grants_group_id'), ['group_id'], unique=False)

    op.create_table('worker_labels',
    sa.Column('worker_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('worker_id', 'label')
    )
    with op.batch_alter_table('worker_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_labels_label'), ['label'], unique=False)

    op.create_table('worker_tags',
    sa.Column('worker_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('worker_id', 'tag')
    )
    op.create_table('task_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=True),
    sa.Column('started_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', mitosis_server.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('signal', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id', 'attempt', name='uq_task_attempts_task_attempt')
    )
    with op.batch_alter_table('task_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_task_attempts_open', ['worker_id'], unique=False, postgresql_where=sa.text('ended_at IS NULL'), sqlite_where=sa.text('ended_at IS NULL'))

    op.create_table('task_dependencies',
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('upstream_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('condition', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['upstream_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'upstream_id')
    )
    with op.batch_alter_table('task_dependencies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_dependencies_upstream_id'), ['upstream_id'], unique=False)

    op.create_table('task_labels',
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'label')
    )
    with op.batch_alter_table('task_labels', schema=None) as batch_op:
        batch_op.create_index('ix_task_labels_label', ['label', 'task_id'], unique=False)

    op.create_table('task_tags',
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'tag')
    )
    with op.batch_alter_table('task_tags', schema=None) as batch_op:
        batch_op.create_index('ix_task_tags_tag', ['tag', 'task_id'], unique=False)
    # Dispatch (S2): ready tasks by priority then age, per group and across groups.
    ready = sa.text("state = 'ready'")
    op.create_index(
        'ix_tasks_ready_group', 'tasks', ['group_id', sa.text('priority DESC'), 'id'],
        postgresql_where=ready, sqlite_where=ready,
    )
    op.create_index(
        'ix_tasks_ready', 'tasks', [sa.text('priority DESC'), 'id'],
        postgresql_where=ready, sqlite_where=ready,
    )
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_seq', sa.BigInteger(), server_default='0', nullable=False))



def downgrade() -> None:
    op.drop_index('ix_tasks_ready', table_name='tasks')
    op.drop_index('ix_tasks_ready_group', table_name='tasks')
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('task_seq')

    with op.batch_alter_table('task_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_task_tags_tag')

    op.drop_table('task_tags')
    with op.batch_alter_table('task_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_task_labels_label')

    op.drop_table('task_labels')
    with op.batch_alter_table('task_dependencies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_dependencies_upstream_id'))

    op.drop_table('task_dependencies')
    with op.batch_alter_table('task_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_task_attempts_open', postgresql_where=sa.text('ended_at IS NULL'), sqlite_where=sa.text('ended_at IS NULL'))

    op.drop_table('task_attempts')
    op.drop_table('worker_tags')
    with op.batch_alter_table('worker_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_labels_label'))

    op.drop_table('worker_labels')
    with op.batch_alter_table('worker_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_grants_group_id'))

    op.drop_table('worker_grants')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_worker_id'))
        batch_op.drop_index(batch_op.f('ix_tasks_upstream_id'))
        batch_op.drop_index('ix_tasks_running_deadline', postgresql_where=sa.text("state = 'running'"), sqlite_where=sa.text("state = 'running'"))
        batch_op.drop_index('ix_tasks_group_state')
        batch_op.drop_index('ix_tasks_group_id')
        batch_op.drop_index('ix_tasks_group_created')
        batch_op.drop_index(batch_op.f('ix_tasks_creator_id'))
        batch_op.drop_index(batch_op.f('ix_tasks_array_id'))

    op.drop_table('tasks')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index('ix_workers_state_heartbeat')
        batch_op.drop_index(batch_op.f('ix_workers_creator_id'))

    op.drop_table('workers')
