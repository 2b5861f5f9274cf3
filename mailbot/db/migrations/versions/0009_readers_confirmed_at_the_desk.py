"""readers say whether their account was confirmed at the desk

Some libraries (Targówek, WBP Poznań) give codes only to accounts confirmed at the desk,
not to ones created online and never confirmed. ``readers.confirmed`` holds what the
reader file's ``potwierdzone`` column says: true, false, or NULL when the file does not
tell; existing readers are NULL (not known), which no rule refuses.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.add_column(sa.Column("confirmed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.drop_column("confirmed")
