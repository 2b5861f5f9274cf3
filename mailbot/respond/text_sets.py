"""The reply texts a decision was made with, kept by digest, so that a reply composed when
it is sent (recipes.py) is the reply that was decided, whatever changed on disk since.

A *text set* is every file a reply may be rendered from: the templates directory's
``email/`` tree and, for a library with its own texts (``texts_dir``), that folder. A
process takes a library's set once, the first time it decides a reply for it, and keeps it
for its life, as the compiled templates always were kept (the daemon reads changed texts
after a restart; each ``mailbot run --once`` reads them anew). The set's digest (SHA-256
of its names and bytes) goes on each outbox row; the set itself is written once into the
``reply_texts`` table, so another process (the separate sender on PostgreSQL, a daemon
restarted with new templates) composes the row from the very same files.

To render, a set is written out into a folder of this process's own (mode 0700, removed
at exit), one per digest, laid out as the originals were, and rendered from there by
render.py as any templates directory and texts folder: its environments and the shape
cache key on the folder, which never changes once written. A file of a library's folder
that resolves outside it (a symlink) is kept as the same symlink, never read, so it is
refused at rendering exactly as before (render.OutsideTexts).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailbot.db.models import ReplyTexts
from mailbot.respond.render import templates_root

__all__ = ["TextSet", "UnknownTexts", "current", "load", "store"]


class UnknownTexts(LookupError):
    """An outbox row names a text set that is not in the database."""


@dataclass(frozen=True)
class TextSet:
    """One set of reply texts, written out: render from ``root`` (a templates directory)
    and ``texts`` (a library's texts folder, or None)."""

    digest: str
    root: Path
    texts: Path | None


@dataclass(frozen=True)
class _Files:
    has_texts: bool
    files: dict[str, bytes]  # "root/email/pl/issued.txt.j2", "texts/pl/issued.txt.j2"
    links: dict[str, str]    # "texts/…": a symlink's target outside the texts folder

    def digest(self) -> str:
        h = hashlib.sha256(b"texts\0" if self.has_texts else b"shipped\0")
        for name in sorted(self.files):
            h.update(b"f\0" + name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        for name in sorted(self.links):
            h.update(b"l\0" + name.encode() + b"\0" + self.links[name].encode() + b"\0")
        return h.hexdigest()

    def packed(self) -> bytes:
        return zlib.compress(json.dumps({
            "has_texts": self.has_texts,
            "files": {k: base64.b64encode(v).decode("ascii") for k, v in self.files.items()},
            "links": self.links}, sort_keys=True).encode())

    @classmethod
    def unpacked(cls, data: bytes) -> _Files:
        doc = json.loads(zlib.decompress(data))
        return cls(doc["has_texts"],
                   {k: base64.b64decode(v) for k, v in doc["files"].items()}, doc["links"])


_lock = threading.Lock()
_current: dict[tuple[Path, Path | None], tuple[TextSet, _Files]] = {}
_written: dict[str, TextSet] = {}
_folder: Path | None = None


def current(templates_dir: Path | None, texts_dir: Path | str | None) -> TextSet:
    """This process's set for a templates directory and a library's texts folder (taken
    the first time it is asked for)."""
    root = templates_root(templates_dir)
    texts = Path(texts_dir).resolve() if texts_dir else None
    key = (root, texts)
    with _lock:
        known = _current.get(key)
        if known is None:
            files = _read(root, texts)
            known = (_write(files.digest(), files), files)
            _current[key] = known
        return known[0]


def store(session: Session, text_set: TextSet, now: datetime) -> None:
    """Writes ``text_set`` into reply_texts unless it is there (in ``session``'s
    transaction: a row naming it is never committed without it)."""
    # Looked up each time (once a batch): the database may be another one since, at the
    # same address (restored from a backup, made anew).
    bind = session.get_bind()
    if session.scalar(select(ReplyTexts.digest).where(
            ReplyTexts.digest == text_set.digest)) is None:
        with _lock:
            files = next(f for ts, f in _current.values() if ts.digest == text_set.digest)
        # Another process deciding with the same new texts may write the row meanwhile:
        # the same digest is the same files, so its row is as good as ours.
        insert = (pg_insert if bind.dialect.name == "postgresql" else sqlite_insert)(
            ReplyTexts.__table__).values(digest=text_set.digest, files=files.packed(),
                                         created_at=now)
        session.execute(insert.on_conflict_do_nothing(index_elements=["digest"]))


def load(session: Session, digest: str) -> TextSet:
    """The set an outbox row names, written out in this process (read from reply_texts
    the first time)."""
    with _lock:
        known = _written.get(digest)
    if known is not None:
        return known
    packed = session.scalar(select(ReplyTexts.files).where(ReplyTexts.digest == digest))
    if packed is None:
        raise UnknownTexts(f"the reply texts {digest[:12]} are not in the database")
    files = _Files.unpacked(packed)
    if files.digest() != digest:
        raise UnknownTexts(f"the reply texts {digest[:12]} in the database are damaged")
    with _lock:
        return _write(digest, files)


def _read(root: Path, texts: Path | None) -> _Files:
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    email = root / "email"
    for path in sorted(email.rglob("*")):
        if path.is_file():
            files[f"root/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    if texts is not None and texts.is_dir():
        for path in sorted(texts.rglob("*")):
            name = f"texts/{path.relative_to(texts).as_posix()}"
            target = path.resolve()
            if not target.is_relative_to(texts):
                links[name] = str(target)  # absolute: outside wherever it is written
            elif path.is_file():
                files[name] = path.read_bytes()
    return _Files(texts is not None, files, links)


def _write(digest: str, files: _Files) -> TextSet:
    """The set written out under this process's folder (once per digest); _lock held."""
    known = _written.get(digest)
    if known is not None:
        return known
    base = _own_folder() / digest
    staging = Path(tempfile.mkdtemp(dir=_own_folder(), prefix=".writing-"))
    (staging / "root" / "email").mkdir(parents=True)
    if files.has_texts:
        (staging / "texts").mkdir()
    for name, data in files.files.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name, target in files.links.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    try:
        staging.rename(base)
    except OSError:  # written before (the folder is ours alone: the same digest, the same files)
        shutil.rmtree(staging, ignore_errors=True)
        if not base.is_dir():
            raise
    # Resolved as render.py resolves them, so that its caches key on these very paths.
    written = TextSet(digest, base.resolve() / "root",
                      base.resolve() / "texts" if files.has_texts else None)
    _written[digest] = written
    return written


def _own_folder() -> Path:
    global _folder
    if _folder is None or not _folder.is_dir():
        _folder = Path(tempfile.mkdtemp(prefix="mailbot-texts-"))  # mode 0700
        atexit.register(shutil.rmtree, _folder, True)
    return _folder
