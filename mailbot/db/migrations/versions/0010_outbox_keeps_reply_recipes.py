"""the outbox keeps what a decided reply is made from, not its bytes

A decided request's reply was written into the outbox rendered (a bilingual multipart
message, ~9 KB) and read back by the sender. It is now kept as its compose job
(``outbox.recipe``, JSON) and the digest of the reply texts it was decided with
(``outbox.texts``, a row of the new ``reply_texts``), and composed when it is sent
(respond/recipes.py): the same row always gives the same bytes. ``message`` becomes
optional (staff alerts, reminders and overrides still keep theirs); ``sent_digest`` is the
SHA-256 of what the relay took. Existing rows keep their bytes and are sent as they are.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailbot.db.models import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reply_texts",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("files", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message", existing_type=sa.LargeBinary(), nullable=True)
        batch.add_column(sa.Column("recipe", sa.Text(), nullable=True))
        batch.add_column(sa.Column("texts", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sent_digest", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_outbox_texts_reply_texts", "reply_texts",
                                 ["texts"], ["digest"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_texts_reply_texts", type_="foreignkey")
        batch.drop_column("sent_digest")
        batch.drop_column("texts")
        batch.drop_column("recipe")
        batch.alter_column("message", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("reply_texts")
