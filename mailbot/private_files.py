"""Writing a file that holds patrons' data or codes: readable by its owner only.

The database and its key are made 0600 where they are created (mailbot.db.session,
mailbot.web.auth); the other files mailbot writes with such content go through here: a
reply written to a file outbox (it may hold a code), a patron's RODO export, the monthly
report. The systemd unit's ``UMask=0077`` covers the daemon, not a command run by hand
under a umask of 022, so the mode is set here, not left to the umask.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

from mailbot.errors import BadInput


class NotWritten(BadInput, OSError):
    """The file could not be written (no such folder, no permission, a full disk): a
    BadInput naming the file (exit 2 from a command), and still an OSError, so that a
    file outbox's reply is retried later like any other passing failure."""


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` whole or not at all, mode 0600: a new temporary file
    beside it (``mkstemp``: made 0600 with O_EXCL under a name nobody can guess), put on
    the disk, then renamed over ``path`` and the rename put on the disk. NotWritten
    (BadInput) naming ``path`` when that fails."""
    target = Path(path)
    folder = target.parent
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _not_written(target, exc) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(name, target)
    except BaseException as exc:
        Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _not_written(target, exc) from None
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # written and renamed; a folder we may not open is not fsynced
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _not_written(target: Path, exc: OSError) -> NotWritten:
    """The error for ``target`` (never the temporary file's name: ``exc.strerror`` only)."""
    reason = exc.strerror or type(exc).__name__
    folder = target.parent
    if isinstance(exc, FileNotFoundError) and not folder.is_dir():
        message = f"cannot write it: there is no folder {folder}"
    elif isinstance(exc, PermissionError):
        message = (f"cannot write it: the folder {folder} is not writable for user "
                   f"{user_name(os.geteuid())}{_owned_by(folder)}")
    elif isinstance(exc, IsADirectoryError):
        message = "cannot write it: it is a folder"
    else:
        message = f"cannot write it: {reason}"
    err = NotWritten(message, file=str(target))
    err.errno, err.strerror = exc.errno, reason
    return err


def _owned_by(folder: Path) -> str:
    try:
        st = folder.stat()
    except OSError:
        return ""
    return f" (it belongs to user {user_name(st.st_uid)}, mode {st.st_mode & 0o777:04o})"


def user_name(uid: int) -> str:
    """A user's name for a message (``with uid N`` when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"with uid {uid}"
