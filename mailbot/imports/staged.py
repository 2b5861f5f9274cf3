"""An uploaded file kept between the dashboard's import preview and its confirmation.

The preview must not write anything, and the confirmation must import exactly the file
that was previewed, without the browser sending it again. So the upload is kept on the
server: in a folder only mailbot's user may enter (0700), one file 0600 per upload, under
a random token. The token is bound to the staff member who uploaded it and to their
session's CSRF token (kept only as a hash): another user, or the same user after logging
in again, cannot confirm it. An upload expires after ``TTL``; it is deleted when it is
confirmed or cancelled, and expired ones are swept whenever another is kept, the import
page is shown, a preview is confirmed or cancelled, and by the daemon's housekeeping.

Confirming first *claims* the upload (``claim``: its record renamed, which only one of two
simultaneous requests can do), so a double click or a second tab imports it once; the
other is told the preview is gone.

Imported files hold codes and patrons' data, hence the modes; the token is never a
path: it is checked against its alphabet before it names a file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailbot.imports.problems import ImportRefused

__all__ = ["TTL_SECONDS", "Staged", "StagedUploads", "default_folder"]

TTL_SECONDS = 30 * 60
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_CHUNK = 1024 * 1024
_CLAIMED = ".claimed"  # the record of an upload being confirmed or cancelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    """One kept upload: ``path`` is the file, under the name it was uploaded with (made
    safe), which the import's messages and the pool's ``source_file`` show."""

    token: str
    path: Path
    user: str
    kind: str
    fields: dict[str, str]
    created: float


def default_folder() -> Path:
    """The system's temporary folder, one subfolder per operating-system user."""
    return Path(tempfile.gettempdir()) / f"mailbot-uploads-{os.getuid()}"


def safe_name(filename: str | None) -> str:
    """The uploaded file's name without any folder, reduced to harmless characters."""
    name = Path(filename or "upload").name
    name = re.sub(r"[^\w.\- ]", "_", name)[:120]
    return name if name.strip(". ") else "upload"  # "", "." or "..": not a file name


def _hash(csrf: str) -> str:
    return hashlib.sha256(csrf.encode()).hexdigest()


class StagedUploads:
    """The kept uploads in ``folder`` (created 0700; refused if it is not ours)."""

    def __init__(self, folder: Path | None = None, *, ttl: float = TTL_SECONDS) -> None:
        self.folder = folder or default_folder()
        self.ttl = ttl

    def _ready(self) -> Path:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.folder)
        except OSError as exc:
            # The server's path is for its log, not for the page.
            log.error("cannot keep an upload in %s: %s", self.folder, exc.strerror or exc)
            raise ImportRefused.one("cannot_keep", "cannot keep the upload") from None
        # A folder someone else made (or a symlink planted) in a shared /tmp is not used.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            log.error("the upload folder %s is not mailbot's own", self.folder)
            raise ImportRefused.one("cannot_keep", "the upload folder is not mailbot's own")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(self.folder, 0o700)
        return self.folder

    def keep(self, source: BinaryIO, *, filename: str | None, limit: int, user: str,
             csrf: str, kind: str, fields: dict[str, str],
             now: float | None = None) -> Staged:
        """Copies ``source`` (at most ``limit`` bytes, else ImportRefused) into a new kept
        upload for ``user`` under their session's ``csrf`` token."""
        now = time.time() if now is None else now
        folder = self._ready()
        self.sweep(now=now)
        token = _new_token()
        name = safe_name(filename)
        box = folder / token
        os.mkdir(box, 0o700)
        path = box / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ImportRefused.one(
                            "too_large", f"the file is larger than {limit / _CHUNK:.3g} MB",
                            file=name, mb=f"{limit / _CHUNK:.3g}")
                    out.write(chunk)
            meta = {"user": user, "csrf": _hash(csrf), "kind": kind, "fields": fields,
                    "name": name, "created": now}
            fd = os.open(folder / f"{token}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(meta, out)
        except BaseException:
            shutil.rmtree(box, ignore_errors=True)
            raise
        return Staged(token, path, user, kind, dict(fields), now)

    def get(self, token: str, *, user: str, csrf: str,
            now: float | None = None) -> Staged | None:
        """The upload ``token`` names, if it exists, has not expired and was kept for
        ``user`` under this ``csrf`` token; None otherwise (an expired one is deleted)."""
        now = time.time() if now is None else now
        if not _TOKEN.fullmatch(token or ""):
            return None
        try:
            meta = json.loads((self.folder / f"{token}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if now - float(meta["created"]) > self.ttl:
            self.discard(token)
            return None
        if meta["user"] != user or not hmac.compare_digest(meta["csrf"], _hash(csrf)):
            return None
        path = self.folder / token / meta["name"]
        if not path.is_file():
            return None
        return Staged(token, path, meta["user"], meta["kind"], dict(meta["fields"]),
                      float(meta["created"]))

    def claim(self, token: str, *, user: str, csrf: str,
              now: float | None = None) -> Staged | None:
        """The upload, as ``get`` finds it, taken for its confirmation or cancellation:
        its record is renamed, atomically, so of two requests for one token only one gets
        it (the other: None, as for an upload that is gone). ``discard`` it when done."""
        staged = self.get(token, user=user, csrf=csrf, now=now)
        if staged is None:
            return None
        try:
            os.rename(self.folder / f"{token}.json", self.folder / f"{token}{_CLAIMED}")
        except OSError:  # claimed (or discarded) by the other request meanwhile
            return None
        return staged

    def discard(self, token: str) -> None:
        """Deletes the kept upload (confirmed, cancelled or expired)."""
        if not _TOKEN.fullmatch(token or ""):
            return
        (self.folder / f"{token}.json").unlink(missing_ok=True)
        (self.folder / f"{token}{_CLAIMED}").unlink(missing_ok=True)
        shutil.rmtree(self.folder / token, ignore_errors=True)

    def sweep(self, *, now: float | None = None) -> int:
        """Deletes every expired upload (and any half-kept one); how many."""
        now = time.time() if now is None else now
        expired: set[str] = set()
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return 0
        for entry in entries:
            token = entry.name.removesuffix(".json").removesuffix(_CLAIMED)
            if not _TOKEN.fullmatch(token):
                continue
            try:
                if now - entry.stat().st_mtime > self.ttl:
                    expired.add(token)
            except OSError:
                continue
        for token in expired:
            self.discard(token)
        return len(expired)


def _new_token() -> str:
    # 24 random bytes are 32 URL-safe characters, the only shape ``get`` accepts.
    return secrets.token_urlsafe(24)
