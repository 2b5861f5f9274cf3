"""One sending process at a time for a SQLite outbox.

On PostgreSQL each reply is claimed with an advisory lock (respond/outbox.py). SQLite has nothing of
the kind, and its outbox could be sent from two processes at once: two ``mailbot run
--once`` started together by cron (or staff running one by hand while cron fires), a
daemon and a ``run --once``, or the sending process a killed ``run --once`` leaves behind
to finish what it decided. Each would read the same pending rows and send them, so every
reply would go out twice.

So whoever sends from a SQLite outbox first holds an exclusive ``flock`` on a lock file
beside the database (``<database>.sending``), for one sending pass, and reads the rows
only after it holds it: a reply another process sent meanwhile is then seen as sent. The
kernel drops the lock when its holder dies, however it dies (kill -9 included), so a
crashed sender never blocks the others; the file stays, holding the last holder's pid for
the message that tells staff who is sending. ``flock`` (not ``fcntl`` record locks): SQLite
itself uses record locks on the database file, and closing any descriptor of a file drops
all of a process's record locks on it — ``flock`` locks belong to their own open file only.
"""

from __future__ import annotations

import errno
import fcntl
import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

WAIT_STEP = 0.05  # seconds between two tries while waiting for the lock


def lock_path(engine: Engine) -> Path | None:
    """The lock file of a SQLite database file; None where there is nothing to guard
    (PostgreSQL claims rows itself; an in-memory database has one process): resolved
    whole, as every lock beside the database (mailbot.db.files.lock_file)."""
    from mailbot.db.files import lock_file

    return lock_file(engine, ".sending")


class SenderLock:
    """The exclusive right to send from one SQLite outbox (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Takes the lock if nobody holds it; False if another sender does."""
        assert self._fd is None, "already held"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except PermissionError:
            # Made by another user (root running a command by hand): a read-only
            # descriptor locks as well; only who holds it goes unrecorded.
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        # Who holds it, for the others' messages (written after taking it: never torn).
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {datetime.now().astimezone().isoformat()}\n".encode(),
                      0)
        except OSError:  # a read-only descriptor (above)
            pass
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """Who last took the lock, for log lines: ``process 1234 (since …) is sending …``."""
        try:
            pid, _, since = self.path.read_text(encoding="ascii").strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            pid = since = ""
        if not pid.isdigit():
            return f"another process is sending from this database's outbox ({self.path})"
        return f"process {pid} (since {since}) is sending from this database's outbox"
