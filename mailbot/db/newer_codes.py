"""Codes issued after a backup was made, for ``mailbot restore`` (mailbot.db.backup).

Restoring an older backup puts its codes back as they were then: a code issued since
would be free again and go to the next patron, a code given twice. So the restore first
looks for them (``newer_issues``: issued in the database being replaced, unissued or
absent in the backup, by the code itself, which is unique across every pool), refuses
with ``refusal`` while there are any, and, told to discard them, marks them in what it
restores (``withdraw``) so that none is issued again.

Marked how: ``Code.expired_at`` (the restore's time), what the schema has for a code that
is never to be handed out. The allocation (mailbot.ledger.FREE), the dashboard,
``status`` and the report all count an expired code out of the codes left, as the
month-close job's expired codes. A code the backup lacks (imported after it was made) is
added, expired, in a pool like the one it came from (and its library, if the backup
lacks that too): importing its file again is then refused as "code already imported"
instead of freeing it. Who got those codes stays in the copy of the replaced database
that the restore keeps aside.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Newer:
    """The codes issued in the database being replaced that the backup has not issued:
    ``free`` (in the backup, unissued there) and ``absent`` (not in it: each the code with
    its pool and library, as the database being replaced has them)."""

    free: list[str]
    absent: list[tuple[Any, ...]]
    latest: str  # the latest of their issue times, for the messages

    @property
    def count(self) -> int:
        return len(self.free) + len(self.absent)


def newer_issues(current: sqlite3.Connection, backup: sqlite3.Connection) -> Newer | None:
    """What restoring ``backup`` over ``current`` would make free again; None: nothing."""
    if current.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                       "name = 'codes'").fetchone() is None:
        return None  # an empty file: nothing was issued in it
    issued = current.execute("SELECT code, issued_at FROM codes WHERE issued_at IS NOT NULL"
                             ).fetchall()
    if not issued:
        return None
    old = dict(backup.execute("SELECT code, issued_at FROM codes").fetchall())
    newer = [(code, at) for code, at in issued if old.get(code) is None]
    if not newer:
        return None
    missing = {code for code, _ in newer if code not in old}
    absent = [row for row in current.execute(
        "SELECT c.code, c.library_id, c.service, c.month, p.id, p.library_id, p.service, "
        "p.month, p.source_file, p.imported_at, p.size, l.name FROM codes c "
        "JOIN code_pools p ON p.id = c.pool_id LEFT JOIN libraries l ON l.id = c.library_id "
        "WHERE c.issued_at IS NOT NULL") if row[0] in missing] if missing else []
    return Newer(free=[code for code, _ in newer if code in old], absent=absent,
                 latest=_utc(max(str(at) for _, at in newer)))


def _utc(stored: str) -> str:
    """An instant as the database stores it (naive UTC), for a message."""
    try:
        return f"{datetime.fromisoformat(stored):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return stored


def withdraw(conn: sqlite3.Connection, newer: Newer, now: datetime) -> None:
    """Marks the codes of ``newer`` expired at ``now`` in the database of ``conn`` (a copy
    of the backup, before it is restored), in one transaction."""
    stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("UPDATE codes SET expired_at = ? WHERE code = ? AND "
                         "issued_at IS NULL AND expired_at IS NULL",
                         [(stamp, code) for code in newer.free])
        pools: dict[int, int] = {}
        for (code, library, service, month, pool, pool_library, pool_service, pool_month,
             source_file, imported_at, size, library_name) in newer.absent:
            conn.execute("INSERT OR IGNORE INTO libraries (id, name) VALUES (?, ?)",
                         (library, library_name or library))
            if pool not in pools:
                pools[pool] = conn.execute(
                    "INSERT INTO code_pools (library_id, service, month, source_file, "
                    "imported_at, size) VALUES (?, ?, ?, ?, ?, ?)",
                    (pool_library, pool_service, pool_month, source_file, imported_at,
                     size)).lastrowid
            conn.execute("INSERT OR IGNORE INTO codes (code, pool_id, library_id, service, "
                         "month, expired_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (code, pools[pool], library, service, month, stamp))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def refusal(database: Path, backup: Path, newer: Newer) -> str:
    """Why the restore refuses, and the two ways on."""
    return (f"{newer.count} code(s) were issued in {database} after {backup} was made (the "
            f"latest at {newer.latest}): restoring it would make them free again, and the "
            "next patrons would get codes already given. Restore a newer backup (made after "
            f"{newer.latest}), or restore this one with --discard-newer: those codes are "
            "then marked expired in the restored database, never issued again (who got "
            "them stays only in the copy of this database kept aside). Nothing was changed")


def withdrawn_line(newer: Newer) -> str:
    """What the restore says it did with them."""
    return (f"{newer.count} code(s) issued after this backup was made (the latest at "
            f"{newer.latest}) are marked expired in the restored database: none of them is "
            "issued again; who got them is in the copy kept aside")
