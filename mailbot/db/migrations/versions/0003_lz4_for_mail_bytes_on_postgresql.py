"""PostgreSQL: the stored mails and replies compressed with lz4

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:40:00

A reply is ~9 KB (multipart text + HTML in Polish and English), so PostgreSQL moves it to
TOAST storage and compresses it; with its default method (pglz) inserting a decide batch's
200 replies cost the server ~43 ms, with lz4 ~10 ms (the same size on disk): pglz is most
of what a burst waits for on PostgreSQL. Requests' raw mail (a patron's HTML mail is often
larger than the 2 KB threshold) is written once per request on the same path.

Only new values are compressed the new way; older ones stay readable as they are. Servers
before PostgreSQL 14, or built without lz4, keep pglz (there is nothing to change there).
SQLite does not compress: nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_COLUMNS = (("outbox", "message"), ("requests", "raw"))


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(bind.execute(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar())


def _set(method: str) -> None:
    if not _lz4_available():
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("default")
