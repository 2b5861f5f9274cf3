"""staff accounts remember their last successful login

The accounts page shows when each account last logged in. The login attempts are kept
only a month (for the lock-out), so an account unused for longer would look as if it had
never been used; ``last_login_at`` keeps the time for good. NULL: not since 0.3.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailbot.db.models import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("last_login_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("last_login_at")
