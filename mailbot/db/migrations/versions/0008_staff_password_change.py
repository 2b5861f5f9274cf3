"""staff accounts can be told to choose their own password

A password an administrator sets on the accounts page (for a new account or after a
forgotten one) is known to two people; the account's owner is asked to replace it at the
next login before any other page opens. ``must_change_password`` says so; existing
accounts keep their passwords as they are (false).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("must_change_password")
