"""Who may open a SQLite database file, and whether a command may create one.

Two mistakes an installation makes easily, refused here before SQLite sees the file:

- a command that only reads (``status``, ``report``, ``patron export``, ``user list``),
  pointed at a database that is not there (another config, a typo in ``database_url``),
  would create an empty one and report on it as if all were well;
- root running a command by hand on the service's database would leave files owned by
  root where the service (user ``mailbot``) must write: a new database, the lock files
  beside it (``<database>.sending``, ``.running``), the dashboard's key file. SQLite itself
  gives the -wal and -shm files it creates as root the database's owner (os_unix.c), so
  reading alone (``mailbot backup``, ``mailbot check``) is harmless and not refused.

PostgreSQL has no files of ours: nothing is checked for it, nor for an in-memory database
or a ``file:`` URI.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from sqlalchemy import Engine, make_url

from mailbot.errors import BadInput
from mailbot.private_files import user_name


def sqlite_file(target: Engine | str) -> Path | None:
    """The absolute path of the database file of a SQLite ``target`` (an engine or its
    URL); None for any other database, an in-memory one or a ``file:`` URI."""
    u = target.url if isinstance(target, Engine) else make_url(target)
    if u.get_backend_name() != "sqlite":
        return None
    path = u.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(os.path.abspath(path))


def lock_file(target: Engine | str, suffix: str) -> Path | None:
    """``<database><suffix>`` beside the SQLite file of ``target`` (``.sending``,
    ``.running``), resolved whole (a symlinked file too): every spelling of one database,
    one lock. None where there is no file to guard."""
    path = sqlite_file(target)
    if path is None:
        return None
    resolved = path.resolve()
    return resolved.with_name(resolved.name + suffix)


def check_database_file(url: str, *, create: bool = True, euid: int | None = None) -> None:
    """Raises BadInput (exit 2) when the database file of ``url`` must not be opened by
    this process: ``create`` is false and there is none; or there is none and its folder
    is missing or not writable for this user; or the process is root (``euid``, default
    the process's own) and the file, or the folder it would be made in, belongs to
    another user; or another user's file this process cannot write."""
    path = sqlite_file(url)
    if path is None:
        return
    exists = path.exists()
    if not create and not exists:
        raise BadInput(f"no database at {path}: mailbot db upgrade creates it (or the first "
                       "mailbot run)")
    if not exists and not path.parent.is_dir():
        raise BadInput(f"no folder {path.parent} for the database: mailbot init makes it; "
                       "or fix database_url")
    refuse_foreign_owner(url, euid=euid)
    if not exists and not _may(path.parent, os.W_OK | os.X_OK):
        raise BadInput(f"the folder {path.parent} (where {path.name} would be made) is not "
                       f"writable for user {user_name(os.geteuid())}: {_whose(path.parent)}; or "
                       "fix database_url")


def _may(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _whose(path: Path) -> str:
    """Who owns ``path`` and what to do about it, for a message."""
    st = path.stat()
    mode = f"mode {st.st_mode & 0o777:04o}"
    if st.st_uid == os.geteuid():
        return f"it is this user's ({mode}): change its mode"
    return (f"it belongs to user {user_name(st.st_uid)} ({mode}): run this as that user "
            f"(sudo -u {_sudo_user(st.st_uid)} mailbot ...)")


def unreadable_database(path: Path) -> BadInput | None:
    """The BadInput for a database file this process may not read, or whose folder it may
    not enter (naming the owner and the mode), or None when it may (or there is none)."""
    try:
        path.stat()
    except PermissionError:
        folder = next((p for p in path.parents if p.exists() and not _may(p, os.X_OK)),
                      path.parent)
        return BadInput(f"cannot read {path}: user {user_name(os.geteuid())} may not enter the "
                        f"folder {folder}: {_whose(folder)}")
    except OSError:
        return None
    if _may(path, os.R_OK):
        return None
    return BadInput(f"cannot read {path} as user {user_name(os.geteuid())}: {_whose(path)}")


def refuse_foreign_owner(url: str, *, euid: int | None = None) -> None:
    """The ownership half of ``check_database_file``, for a command that writes a
    database without opening it through mailbot.db.session (``restore``)."""
    path = sqlite_file(url)
    if path is None:
        return
    euid = os.geteuid() if euid is None else euid
    target = path if path.exists() else path.parent
    try:
        st = target.stat()
    except OSError:
        return  # no such folder: SQLite's own error names it
    if st.st_uid == euid:
        return
    user = user_name(st.st_uid)
    if euid == 0:
        if target == path:
            what, why = path, ("files root creates beside it (its lock files, the "
                               "dashboard's key) would lock the service out")
        else:
            what = f"{target} (where {path.name} would be made)"
            why = "a database root creates there would be root's, and lock the service out"
        raise BadInput(f"{what} belongs to user {user}: run this as that user (sudo -u "
                       f"{_sudo_user(st.st_uid)} mailbot ...): {why}")
    if target == path and not os.access(path, os.R_OK | os.W_OK,
                                        effective_ids=os.access in os.supports_effective_ids):
        raise BadInput(f"cannot open {path}: it belongs to user {user} (mode "
                       f"{st.st_mode & 0o777:04o}): run this as that user (sudo -u "
                       f"{_sudo_user(st.st_uid)} mailbot ...)")



def _sudo_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"'#{uid}'"
