"""the audit log keeps the values of each entry, so staff read it in their language

Until now an entry's ``detail`` was one English line ("debt -> issued (legimi, card …)"),
shown as such on the Polish dashboard. ``args`` keeps the values instead; the dashboard
words them from its catalogue. Entries written before stay as they were (``args`` NULL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("args", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("args")
