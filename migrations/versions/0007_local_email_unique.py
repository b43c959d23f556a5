"""users: one local user per email address (admins now set local users' addresses)

Revision ID: 0007_local_email
Revises: 0006_password_change
Create Date: 2026-12-07

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_local_email'
down_revision = '0006_password_change'
branch_labels = None
depends_on = None


def upgrade():
    # Before this revision no local user could have an address, so none collide.
    op.create_index(
        'uq_users_local_email',
        'users',
        ['email'],
        unique=True,
        sqlite_where=sa.text("source = 'local'"),
        postgresql_where=sa.text("source = 'local'"),
    )


def downgrade():
    op.drop_index('uq_users_local_email', table_name='users')
