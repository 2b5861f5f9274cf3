"""Writing a file that holds patrons' data or codes: readable by its owner only.

The database and its key are made 0600 where they are created (mailbot.db.session,
mailbot.web.auth); the other files mailbot writes with such content go through here: a
reply written to a file outbox (it may hold a code), a patron's RODO export, the monthly
report. The systemd unit's ``UMask=0077`` covers the daemon, not a command run by hand
under a umask of 022, so the mode is set here, not left to the umask.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` whole or not at all (a temporary file renamed over
    it), mode 0600."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing temporary file keeps its mode otherwise
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
