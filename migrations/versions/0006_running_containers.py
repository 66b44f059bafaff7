"""running containers (the cluster inventory)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:25:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "running_containers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("cluster", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("container", sa.String(length=253), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=True),
        sa.Column("registry_name", sa.String(length=64), nullable=True),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cluster", "uid", "container", name="uq_running_container"),
    )
    with op.batch_alter_table("running_containers", schema=None) as batch_op:
        batch_op.create_index("ix_running_image", ["repository", "digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("running_containers", schema=None) as batch_op:
        batch_op.drop_index("ix_running_image")
    op.drop_table("running_containers")
