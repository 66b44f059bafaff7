"""image packages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_packages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("image_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("purl", sa.String(length=512), nullable=True),
        sa.Column("distro", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "ecosystem", "name", "version", name="uq_image_package"),
    )
    with op.batch_alter_table("image_packages", schema=None) as batch_op:
        batch_op.create_index("ix_image_packages_name", ["ecosystem", "name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_packages", schema=None) as batch_op:
        batch_op.drop_index("ix_image_packages_name")
    op.drop_table("image_packages")
