"""``mailbot backup`` and ``mailbot restore``: a consistent copy of a live SQLite database,
and putting one back.

The database runs in WAL mode: its last commits may live only in ``mailbot.db-wal`` until
a checkpoint, so a ``cp`` of the file while mailbot runs can copy a torn or stale database.
Both directions go through SQLite's online backup API instead, which copies pages through
SQLite's own locking:

* **backup**: the copy is made in one step (``pages=-1``), i.e. in one read transaction
  of the source: a snapshot of one moment. In WAL mode a reader never blocks a writer, so
  a burst goes on meanwhile (only the WAL's checkpoint waits until the copy is done, a
  fraction of a second for a few MB). A copy in steps of N pages would release the
  snapshot between steps, and SQLite restarts such a copy from the first page whenever
  another connection writes to the source in between — under a burst, every few
  milliseconds, so it might never end. The copy goes to a temporary file (0600) beside
  the destination, is made self-contained (rollback journal, no -wal), checked
  (``integrity_check``, an Alembic revision), fsynced, and only then given its name; an
  existing file is never overwritten.
* **restore**: the backup is checked the same way (and that this mailbot knows its
  schema), the database being replaced is kept as ``<db>.before-restore-<UTC time>`` (a
  copy made the same way), and the backup is copied INTO the database through the API,
  so SQLite writes it through the database's own -wal and -shm: renaming a file over a
  database whose -wal holds commits would let SQLite replay them onto the wrong file. It
  refuses while a mailbot process works on the database (db/running.py), and when the
  database has issued codes the backup has not (they would be handed out again), unless
  told to discard them: then they are marked expired in what is restored
  (db/newer_codes.py). A database being replaced that SQLite cannot read at all is
  renamed aside, with its -wal and -shm, as it was.

PostgreSQL has its own tools (``pg_dump`` / ``pg_restore``): both refuse with the command.

One concept, copying a live SQLite database safely in either direction, in one file:
backup and restore share the copy, its checks and how a file gets its name.
"""

from __future__ import annotations

import errno
import os
import shlex
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import make_url

from mailbot.clock import utcnow
from mailbot.errors import BadInput, MailbotError

if TYPE_CHECKING:
    from mailbot.db.newer_codes import Newer

SQLITE_TIMEOUT = 30.0  # seconds a connection waits for a lock another one holds


def _database_file(url: str, *, command: str) -> Path:
    """The SQLite file of ``url``; BadInput for anything else (saying what to use)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        raise BadInput(
            f"database_url is a PostgreSQL database "
            f"({parsed.render_as_string(hide_password=True)}): `mailbot {command}` is for "
            f"SQLite; use PostgreSQL's own tool: {pg_command(url, command)}")
    if backend != "sqlite":
        raise BadInput(f"`mailbot {command}` is for SQLite databases; database_url is "
                       f"{backend}: use its own backup tool")
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BadInput(f"`mailbot {command}` needs a database file; database_url names "
                       f"{database or 'an in-memory database'}")
    return Path(database).resolve()


def pg_command(url: str, command: str) -> str:
    """The pg_dump (``command`` "backup") or pg_restore ("restore") command line for the
    PostgreSQL database of ``url``; the password comes from ~/.pgpass or PGPASSWORD."""
    parsed = make_url(url)
    conn = [f"-h {shlex.quote(parsed.host)}" if parsed.host else "",
            f"-p {parsed.port}" if parsed.port else "",
            f"-U {shlex.quote(parsed.username)}" if parsed.username else ""]
    where = " ".join(part for part in conn if part)
    name = shlex.quote(parsed.database or "DBNAME")
    if command == "backup":
        return " ".join(filter(None, ["pg_dump -Fc", where, "-f FILE", name]))
    return (" ".join(filter(None, ["pg_restore --clean --if-exists --single-transaction",
                                   where, "-d", name,
                                   "FILE"])) + " (with every mailbot process stopped)")


def _connect(path: Path, *, mode: str) -> sqlite3.Connection:
    """A connection to an existing file (``mode`` "ro" or "rw": never creates one)."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True,
                           timeout=SQLITE_TIMEOUT, isolation_level=None)


def _open_source(path: Path) -> sqlite3.Connection:
    """A connection that reads the live database. Read-only where SQLite can do that; a
    WAL database left with an unrecovered -wal (its last process killed) needs a
    read-write one to be read (the recovery is SQLite's, as any mailbot start does)."""
    conn = _connect(path, mode="ro")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        conn = _connect(path, mode="rw")
    return conn


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:  # no such table
        return None
    return rows[0][0] if len(rows) == 1 else None


def _issued(conn: sqlite3.Connection) -> int:
    try:
        return conn.execute("SELECT count(*) FROM codes WHERE issued_at IS NOT NULL"
                            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _integrity(conn: sqlite3.Connection) -> str:
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    return "ok" if rows == ["ok"] else "; ".join(rows[:3])


def _copy(source: sqlite3.Connection, dest: Path) -> None:
    """Copies ``source`` into the new file ``dest`` in one step (the module docstring says
    why), then makes the copy one self-contained file and puts it on the disk."""
    target = sqlite3.connect(dest, timeout=SQLITE_TIMEOUT, isolation_level=None)
    try:
        source.backup(target, pages=-1)
        # The copy carries the source's WAL mode in its header: a backup file should be
        # one file, readable read-only anywhere, so it gets a rollback journal.
        target.execute("PRAGMA journal_mode=DELETE").fetchone()
    finally:
        target.close()
    _fsync(dest)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path) -> None:
    """Gives ``tmp`` the name ``dest``, never replacing a file that has it meanwhile."""
    try:
        os.link(tmp, dest)  # fails if dest exists, unlike a rename
    except FileExistsError:
        raise _exists(dest) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A filesystem without hard links: a rename, after looking once more.
        if dest.exists():
            raise _exists(dest) from None
        os.rename(tmp, dest)
    else:
        os.unlink(tmp)
    _fsync(dest.parent)


def _exists(dest: Path) -> BadInput:
    return BadInput("exists already; a backup never overwrites a file: give a new name "
                    "(a dated one, e.g. mailbot-$(date +%F).db)", file=str(dest))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} KB"


def _checked_copy(source: sqlite3.Connection, dest: Path, *, what: str,
                  check: bool = True) -> tuple[str | None, int]:
    """Copies ``source`` to a temporary file beside ``dest``, checks the copy (when
    ``check``) and gives it the name ``dest``; returns (schema revision, codes issued)."""
    try:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.",
                                    suffix=".part")
    except PermissionError:
        raise BadInput(f"cannot write to the folder {dest.parent}", file=str(dest)) from None
    os.close(fd)  # mkstemp made it 0600; SQLite writes into the empty file
    tmp = Path(name)
    try:
        _copy(source, tmp)
        copy = _connect(tmp, mode="ro")
        try:
            problem = _integrity(copy) if check else "ok"
            revision, issued = _revision(copy), _issued(copy)
        finally:
            copy.close()
        if problem != "ok":
            raise MailbotError(f"the copy of {what} fails SQLite's integrity check "
                               f"({problem}): the database itself may be damaged; "
                               f"{dest} was not written")
        if check and revision is None:
            raise BadInput("is not a mailbot database (it has no alembic_version table): "
                           "check database_url", file=what)
        _publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return revision, issued


def backup_database(url: str, dest: str) -> str:
    """Writes a consistent copy of the live SQLite database of ``url`` to the new file
    ``dest``; returns the line for the CLI to print."""
    from mailbot.db.files import unreadable_database

    database = _database_file(url, command="backup")
    target = Path(dest).absolute()
    problem = unreadable_database(database)
    if problem is not None:
        raise problem
    if not database.is_file():
        raise BadInput("no database here: nothing to back up (check database_url)",
                       file=str(database))
    if not target.parent.is_dir():
        raise BadInput(f"the folder {target.parent} does not exist", file=dest)
    if target.exists() or target.is_symlink():
        raise _exists(target)
    source = None
    try:
        source = _open_source(database)
        revision, issued = _checked_copy(source, target, what=str(database))
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise BadInput(f"is not a SQLite database ({exc}): check database_url",
                           file=str(database)) from None
        raise MailbotError(f"the backup of {database} failed ({exc}); {target} was not "
                           "written") from None
    finally:
        if source is not None:
            source.close()
    return (f"backup of {database} written to {target} (schema {revision}, "
            f"{issued} codes issued, {_size(target.stat().st_size)})")


def _checked_backup(src: Path) -> sqlite3.Connection:
    """A read-only connection to the backup ``src`` after checking it is a whole mailbot
    database whose schema this mailbot knows; BadInput otherwise."""
    from mailbot.db.migrate import HEAD, known_revisions

    if not src.is_file():
        raise BadInput("no such file", file=str(src))
    try:
        conn = _connect(src, mode="ro")
    except sqlite3.Error as exc:
        raise BadInput(f"cannot be opened ({exc})", file=str(src)) from None
    try:
        problem = _integrity(conn)
        revision = _revision(conn)
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        conn.close()
        raise BadInput(f"is not a SQLite database ({exc})", file=str(src)) from None
    if problem != "ok":
        conn.close()
        raise BadInput(f"is damaged: SQLite's integrity check says {problem}",
                       file=str(src))
    if revision is None:
        conn.close()
        raise BadInput("is not a mailbot database (it has no alembic_version table)",
                       file=str(src))
    if revision not in known_revisions():
        conn.close()
        raise BadInput(f"was made by a newer mailbot (schema {revision}; this one knows up "
                       f"to {HEAD}): restore it with that version, or restore a backup "
                       "made by this one", file=str(src))
    return conn


def _aside(database: Path) -> Path:
    """A free name for the copy of the database a restore replaces."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    path = database.with_name(f"{database.name}.before-restore-{stamp}")
    n = 1
    while path.exists():
        n += 1
        path = database.with_name(f"{database.name}.before-restore-{stamp}-{n}")
    return path


def _withdrawn(source: sqlite3.Connection, newer: Newer, beside: Path) -> Path:
    """A copy of the backup ``source`` (a temporary file in the folder ``beside``) with
    the codes of ``newer`` withdrawn (mailbot.db.newer_codes): the restore copies it in,
    so the database gets the backup and the marks together or neither."""
    from mailbot.db.newer_codes import withdraw

    fd, name = tempfile.mkstemp(dir=beside, prefix=".restore.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        _copy(source, tmp)
        conn = _connect(tmp, mode="rw")
        try:
            withdraw(conn, newer, utcnow())
        finally:
            conn.close()
        _fsync(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """SQLite says the file is damaged or no database ("database disk image is
    malformed", "file is not a database"), not that it is busy or unreachable
    (OperationalError: locked, I/O error, cannot open)."""
    return not isinstance(exc, sqlite3.OperationalError)


def _move_aside(database: Path, aside: Path) -> None:
    """Keeps a database SQLite cannot read as it was: the file and its -wal and -shm are
    renamed (under the exclusive running lock: no mailbot process has them open)."""
    for suffix in ("", "-wal", "-shm"):
        here = database.with_name(database.name + suffix)
        if here.exists():
            os.rename(here, aside.with_name(aside.name + suffix))
    _fsync(database.parent)


def restore_database(url: str, src: str, *, discard_newer: bool = False) -> str:
    """Puts the backup ``src`` back as the SQLite database of ``url``, keeping the database
    it replaces beside it; returns the line for the CLI to print. Refuses while a mailbot
    process works on the database.

    Codes the database being replaced has issued and the backup has not (issued after
    the backup was made) would be free again, and go to the next patrons a second time:
    the restore refuses (MailbotError, exit 1, nothing changed), unless ``discard_newer``
    (``--discard-newer``): then the restored database has those codes expired, never
    issued again (mailbot.db.newer_codes). A database being replaced that SQLite cannot read
    (the usual reason to restore) is not looked into: it is kept as it was, and the line
    says so."""
    from mailbot.db.files import refuse_foreign_owner
    from mailbot.db.migrate import HEAD
    from mailbot.db.newer_codes import newer_issues, refusal, withdrawn_line
    from mailbot.db.running import holding_alone
    from mailbot.db.session import private_sqlite_file

    database = _database_file(url, command="restore")
    backup = Path(src).absolute()
    if backup.exists() and database.exists() and backup.resolve() == database:
        raise BadInput("is the database itself: restore from a backup file", file=src)
    if not database.parent.is_dir():
        raise BadInput(f"the folder {database.parent} does not exist (check database_url)",
                       file=str(database))
    # Root restoring the service's database would leave root's files beside it.
    refuse_foreign_owner(f"sqlite:///{database}")
    source = _checked_backup(backup)
    prepared: Path | None = None
    try:
        with holding_alone(url):
            kept = ""
            newer = None
            if database.exists():
                aside = _aside(database)
                current = None
                unreadable: sqlite3.DatabaseError | None = None
                try:
                    current = _open_source(database)
                    try:
                        newer = newer_issues(current, source)
                    except sqlite3.DatabaseError as exc:
                        if not _damaged(exc):
                            raise
                        unreadable = exc
                    if newer is not None and not discard_newer:
                        raise MailbotError(refusal(database, backup, newer))
                    # Unchecked: a damaged database is a reason to restore; it is kept
                    # as it was.
                    _checked_copy(current, aside, what=str(database), check=False)
                except sqlite3.DatabaseError as exc:
                    if not _damaged(exc):  # locked by another program, an I/O error
                        raise MailbotError(
                            f"the database {database} cannot be read ({exc}), so no copy "
                            "of it could be kept; nothing was changed") from None
                    if current is not None:
                        current.close()
                        current = None
                    unreadable = unreadable or exc
                    _move_aside(database, aside)
                finally:
                    if current is not None:
                        current.close()
                kept = f"; the database it replaced is kept as {aside}"
                if unreadable is not None:
                    kept += (f" (SQLite could not read it: {unreadable}; so it was not "
                             "checked for codes issued after this backup was made)")
            if newer is not None:
                prepared = _withdrawn(source, newer, database.parent)
                source.close()
                source = _connect(prepared, mode="ro")
            private_sqlite_file(f"sqlite:///{database}")  # a new file: 0600
            target = _connect(database, mode="rw")
            try:
                try:
                    # Through the database's own journal (its -wal): one transaction,
                    # so a failure leaves the database as it was.
                    source.backup(target, pages=-1)
                except sqlite3.Error as exc:
                    raise MailbotError(f"restoring {backup} into {database} failed ({exc}); "
                                       "the database is unchanged") from None
                revision, issued = _revision(target), _issued(target)
            finally:
                target.close()
    finally:
        source.close()
        if prepared is not None:
            prepared.unlink(missing_ok=True)
    line = (f"restored {database} from {backup} (schema {revision}, {issued} codes "
            f"issued){kept}")
    if newer is not None:
        line += "\n" + withdrawn_line(newer)
    if revision != HEAD:
        line += (f"\nschema {revision} is older than this mailbot's {HEAD}: "
                 "`mailbot db upgrade` (or the next start of mailbot) brings it up")
    return line
