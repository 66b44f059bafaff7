"""osv advisories

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa



revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('advisories',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('modified', sa.DateTime(timezone=True), nullable=False),
    sa.Column('withdrawn', sa.DateTime(timezone=True), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('aliases', sa.Text(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('advisory_packages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('advisory_id', sa.String(length=128), nullable=False),
    sa.Column('ecosystem', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['advisory_id'], ['advisories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('advisory_id', 'ecosystem', 'name', name='uq_advisory_package')
    )
    with op.batch_alter_table('advisory_packages', schema=None) as batch_op:
        batch_op.create_index('ix_advisory_packages_lookup', ['ecosystem', 'name'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('advisory_packages', schema=None) as batch_op:
        batch_op.drop_index('ix_advisory_packages_lookup')

    op.drop_table('advisory_packages')
    op.drop_table('advisories')

