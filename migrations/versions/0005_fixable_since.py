"""when a finding became fixable

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:15:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracked_findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fixable_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_tracked_team_status", ["team", "status"], unique=False)
    op.execute(
        "UPDATE tracked_findings SET fixable_since = first_seen_at WHERE fixed_version IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("tracked_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_tracked_team_status")
        batch_op.drop_column("fixable_since")
