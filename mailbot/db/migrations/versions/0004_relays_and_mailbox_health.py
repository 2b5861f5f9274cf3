"""relays and mailbox health

A reply now leaves through the relay of the mailbox its request came in on, paced to that
account's sending limits: the outbox keeps the relay each reply was handed to (its limits
count its rows sent within the last minute, hour and day), and the new ``relays`` table
keeps each account's health and pauses (authentication failure, throttling). Replies remember their first
temporary failure (they give up send_retry_for after it). Mailboxes remember since when
they fail (a library is decided without a mailbox down longer than
``daemon.mailbox_grace``) and their authentication failures (the next login waits).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 05:30:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from mailbot.db.models import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'relays',
        sa.Column('key', sa.String(length=500), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('down_since', UTCDateTime(timezone=True), nullable=True),
        sa.Column('paused_until', UTCDateTime(timezone=True), nullable=True),
        sa.Column('pause_reason', sa.String(length=16), nullable=True),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_ok_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('refused_for', sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relay', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('failing_since', UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_outbox_relay_sent', ['relay', 'sent_at'], unique=False)
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('down_since', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('login_failures', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('login_retry_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('login_refused_for', sa.String(length=16), nullable=True))
    # A mailbox failing when mailbot is upgraded is failing from now on: without a
    # down_since its grace would never start.
    mailboxes = sa.table('mailboxes', sa.column('last_error', sa.Text),
                         sa.column('down_since', UTCDateTime(timezone=True)))
    op.execute(mailboxes.update().where(mailboxes.c.last_error.is_not(None))
               .values(down_since=datetime.now(UTC)))
    # Retries already under way keep their clock: it ran from created_at before.
    outbox = sa.table('outbox', sa.column('attempts', sa.Integer), sa.column('state', sa.String),
                      sa.column('created_at', UTCDateTime(timezone=True)),
                      sa.column('failing_since', UTCDateTime(timezone=True)))
    op.execute(outbox.update().where(outbox.c.state == 'pending', outbox.c.attempts > 0)
               .values(failing_since=outbox.c.created_at))


def downgrade() -> None:
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('login_refused_for')
        batch_op.drop_column('login_retry_at')
        batch_op.drop_column('login_failures')
        batch_op.drop_column('down_since')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_relay_sent')
        batch_op.drop_column('failing_since')
        batch_op.drop_column('relay')
    op.drop_table('relays')
