"""tracked findings, decisions, alerts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:32:59.212852
"""
from alembic import op
import sqlalchemy as sa



revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('summary', sa.String(length=400), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('next_escalation_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.String(length=32), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['slack_messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_due', ['acked_at', 'next_escalation_at'], unique=False)

    op.create_table('tracked_findings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('registry_name', sa.String(length=64), nullable=False),
    sa.Column('repository', sa.String(length=255), nullable=False),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('package', sa.String(length=255), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('remediation', sa.Text(), nullable=False),
    sa.Column('fixed_version', sa.String(length=128), nullable=True),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_tag', sa.String(length=128), nullable=True),
    sa.Column('last_seen_digest', sa.String(length=80), nullable=False),
    sa.Column('fixed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fixed_in_tag', sa.String(length=128), nullable=True),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('assignee', sa.String(length=32), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['slack_messages.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('registry_name', 'repository', 'check_id', 'package', name='uq_tracked_finding')
    )
    with op.batch_alter_table('tracked_findings', schema=None) as batch_op:
        batch_op.create_index('ix_tracked_open', ['status', 'registry_name', 'repository'], unique=False)

    op.create_table('suppressions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('registry_name', sa.String(length=64), nullable=True),
    sa.Column('repository', sa.String(length=255), nullable=True),
    sa.Column('digest', sa.String(length=80), nullable=True),
    sa.Column('check_id', sa.String(length=128), nullable=False),
    sa.Column('package', sa.String(length=255), nullable=True),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('until_fixed', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('decided_by', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finding_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['finding_id'], ['tracked_findings.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.create_index('ix_suppressions_active', ['expired_at', 'check_id'], unique=False)

    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='post'))
        batch_op.add_column(sa.Column('parent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('context', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_slack_messages_subject'), ['subject'], unique=False)
        batch_op.create_foreign_key('fk_slack_messages_parent', 'slack_messages', ['parent_id'], ['id'])




def downgrade() -> None:

    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint('fk_slack_messages_parent', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_slack_messages_subject'))
        batch_op.drop_column('context')
        batch_op.drop_column('subject')
        batch_op.drop_column('parent_id')
        batch_op.drop_column('kind')

    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_index('ix_suppressions_active')

    op.drop_table('suppressions')
    with op.batch_alter_table('tracked_findings', schema=None) as batch_op:
        batch_op.drop_index('ix_tracked_open')

    op.drop_table('tracked_findings')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_due')

    op.drop_table('alerts')

