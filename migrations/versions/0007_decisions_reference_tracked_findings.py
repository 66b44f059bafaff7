"""decisions reference the repository-level finding people decided on

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:00:00
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# 0001 left the constraint unnamed: PostgreSQL called it decisions_finding_id_fkey, and SQLite's
# batch mode needs a naming convention to find it.
_CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _old_name() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "decisions_finding_id_fkey"
    return "fk_decisions_finding_id_findings"


def upgrade() -> None:
    with op.batch_alter_table("decisions", naming_convention=_CONVENTION) as batch_op:
        batch_op.drop_constraint(_old_name(), type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_decisions_tracked_finding", "tracked_findings", ["finding_id"], ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", naming_convention=_CONVENTION) as batch_op:
        batch_op.drop_constraint("fk_decisions_tracked_finding", type_="foreignkey")
        batch_op.create_foreign_key(
            _old_name(), "findings", ["finding_id"], ["id"], ondelete="SET NULL"
        )
