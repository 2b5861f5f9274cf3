"""address keys for the sender caps

The caps on one sender (codes per address a month, replies per address a day) counted exact
addresses, so ``collector+15@…`` … ``+19@…`` got five more codes than ``collector@…``
could. They now count ``address_key`` (lower case, no ``+tag``, no dots at gmail.com),
kept beside the address in the ledger and the outbox, indexed in place of the address.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailbot.db.models import address_key

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Rows already written get their key here, a thousand per statement.
_BATCH = 1000


def _fill(table: str, source: str, key: str) -> None:
    conn = op.get_bind()
    rows = sa.table(table, sa.column("id", sa.Integer), sa.column(source, sa.String),
                    sa.column(key, sa.String))
    update = rows.update().where(rows.c.id == sa.bindparam("row_id")).values(
        {key: sa.bindparam("key_value")})
    pending: list[dict[str, object]] = []
    for row_id, value in conn.execute(sa.select(rows.c.id, rows.c[source])
                                      .where(rows.c[source].is_not(None))).all():
        pending.append({"row_id": row_id, "key_value": address_key(value)})
        if len(pending) >= _BATCH:
            conn.execute(update, pending)
            pending = []
    if pending:
        conn.execute(update, pending)


def upgrade() -> None:
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sa.String(length=320), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('to_key', sa.String(length=320), nullable=True))
    _fill('ledger', 'email', 'email_key')
    _fill('outbox', 'to_address', 'to_key')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_email_month')
        batch_op.create_index('ix_ledger_email_key_month', ['library_id', 'month', 'email_key'],
                              unique=False)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_to')
        batch_op.create_index('ix_outbox_to_key', ['library_id', 'to_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_to_key')
        batch_op.create_index('ix_outbox_to', ['library_id', 'to_address'], unique=False)
        batch_op.drop_column('to_key')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_email_key_month')
        batch_op.create_index('ix_ledger_email_month', ['library_id', 'month', 'email'],
                              unique=False)
        batch_op.drop_column('email_key')
