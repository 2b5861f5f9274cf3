"""Which processes are working on a SQLite database: the "running" lock.

``mailbot restore`` puts a backup back into the database file. A process working on that
file meanwhile (the daemon, a ``run --once`` from cron and the sending process it leaves
behind, the demo while it serves) would carry on from what it had read before, deciding
and sending from a queue the restore replaced, and could write its next batch over it.

So each of them holds a SHARED ``flock`` on ``<database>.running`` beside the database
for as long as it works on it, and ``restore`` takes it EXCLUSIVE without waiting: while
anyone holds it, the restore refuses and says who last started. The kernel drops a lock
when its holder dies, however it dies, so a killed process never blocks a restore; the
file stays. A process starting while a restore holds the lock waits for it (a few
seconds), then works on the restored database.

``flock`` and not ``fcntl`` record locks, for the reason respond/sender_lock.py gives
(SQLite's own record locks on the database file). PostgreSQL: nothing to hold here (a
restore there is ``pg_restore``, with the bot processes stopped); an in-memory database
has one process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from mailbot.errors import BadInput, MailbotError

WAIT_STEP = 0.05  # seconds between two tries while a restore holds the lock
RESTORE_WAIT = 120.0  # seconds a starting process waits for a restore to finish
_RECORD = 96  # bytes: one fixed-width "pid since" record, overwritten by each taker


def running_path(target: Engine | str) -> Path | None:
    """The lock file of the SQLite database of ``target`` (an engine or its URL); None
    where there is nothing to guard (mailbot.db.files.lock_file)."""
    from mailbot.db.files import lock_file

    return lock_file(target, ".running")


def _url(target: Engine | str) -> str:
    return (target.url.render_as_string(hide_password=False) if isinstance(target, Engine)
            else target)


def _open(path: Path, target: Engine | str) -> int:
    """The lock file's descriptor, made if need be. First the refusals of mailbot.db.files
    (BadInput, exit 2), so that root leaves no file of its own beside another user's
    database and a missing or unwritable folder is named; then a lock file this user
    cannot open or make is named with its owner (BadInput), not a traceback."""
    from mailbot.db.files import check_database_file

    check_database_file(_url(target), create=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError:
        pass
    except FileNotFoundError:
        raise BadInput(f"cannot make the lock file {path}: there is no folder "
                       f"{path.parent} (check database_url)") from None
    try:
        # Made by another user (root running a command by hand): a read-only
        # descriptor locks as well; only who holds it goes unrecorded.
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # not there, and the folder is not ours to make it in
        raise BadInput(f"cannot make the lock file {path}: the folder {_owner(path.parent)}; "
                       "mailbot makes its lock files beside the database, so run it as "
                       "the user that may write there") from None
    except PermissionError:
        raise BadInput(f"cannot open the lock file {path}: it {_owner(path)}; run mailbot "
                       "as the user that owns the database") from None


def _owner(path: Path) -> str:
    """"belongs to user X (mode M) and this is user Y", for a message."""
    from mailbot.private_files import user_name as name

    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror})"
    return (f"belongs to user {name(st.st_uid)} (mode {st.st_mode & 0o777:04o}) and this "
            f"is user {name(os.geteuid())}")


def _try(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _record(fd: int) -> None:
    """Who took the lock last, for the messages of the others. A fixed-width record
    written in place: two shared holders writing at once leave one whole record."""
    line = f"{os.getpid()} {datetime.now().astimezone().isoformat(timespec='seconds')}"
    try:
        os.pwrite(fd, line.ljust(_RECORD - 1).encode("ascii") + b"\n", 0)
    except OSError:  # a read-only descriptor (see _open)
        pass


def last_holder(path: Path) -> tuple[int, str] | None:
    """(pid, since) of the process that took the lock last, if it could say."""
    try:
        pid, _, since = path.read_text(encoding="ascii").strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        return None
    return (int(pid), since.strip()) if pid.isdigit() else None


def _release(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def holding_running(target: Engine | str, *, wait: float = RESTORE_WAIT) -> Iterator[None]:
    """Holds the shared running lock of ``target``'s SQLite database for the block
    (nothing for PostgreSQL). Waits while a restore holds the database, at most ``wait``
    seconds, then raises MailbotError."""
    path = running_path(target)
    if path is None:
        yield
        return
    fd = _open(path, target)
    try:
        deadline = time.monotonic() + wait
        while not _try(fd, fcntl.LOCK_SH):
            if time.monotonic() >= deadline:
                holder = last_holder(path)
                who = f" (process {holder[0]}, since {holder[1]})" if holder else ""
                raise MailbotError(
                    f"the database {path.with_suffix('')} is being restored{who}: "
                    "start mailbot again once `mailbot restore` has finished")
            time.sleep(WAIT_STEP)
    except BaseException:
        os.close(fd)
        raise
    _record(fd)
    try:
        yield
    finally:
        _release(fd)


@contextmanager
def holding_alone(target: Engine | str) -> Iterator[None]:
    """Holds the running lock of ``target``'s SQLite database EXCLUSIVE for the block
    (``mailbot restore``), or raises MailbotError at once if a mailbot process is working
    on the database (nothing for PostgreSQL)."""
    path = running_path(target)
    if path is None:
        yield
        return
    fd = _open(path, target)
    if not _try(fd, fcntl.LOCK_EX):
        os.close(fd)
        holder = last_holder(path)
        who = (f"process {holder[0]}, started {holder[1]}, is the last one that started"
               if holder else "which one could not be recorded")
        raise MailbotError(
            f"a mailbot process is running on the database {path.with_suffix('')} "
            f"({who}): stop it first — the daemon with `systemctl stop mailbot`; from "
            "cron, let the run in progress end and keep the next one from starting — "
            "then restore again")
    _record(fd)
    try:
        yield
    finally:
        _release(fd)
