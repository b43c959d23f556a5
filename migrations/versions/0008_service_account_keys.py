"""service_account_keys: public keys of key files (private_key_jwt); token_hash nullable

An account may hold keys and no token. The private keys are never stored.

Revision ID: 0008_sa_keys
Revises: 0007_local_email
Create Date: 2026-12-07

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_sa_keys'
down_revision = '0007_local_email'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('service_account_keys',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['service_accounts.client_id'], name=op.f('fk_service_account_keys_client_id_service_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', 'kid', name=op.f('pk_service_account_keys'))
    )
    with op.batch_alter_table('service_accounts', schema=None) as batch_op:
        batch_op.alter_column('token_hash', existing_type=sa.String(length=64), nullable=True)


def downgrade():
    # An account with keys and no token cannot go back: it would have no credential.
    op.execute("DELETE FROM service_accounts WHERE token_hash IS NULL")
    with op.batch_alter_table('service_accounts', schema=None) as batch_op:
        batch_op.alter_column('token_hash', existing_type=sa.String(length=64), nullable=False)
    op.drop_table('service_account_keys')
