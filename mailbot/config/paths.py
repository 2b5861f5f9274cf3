"""Relative paths in the config count from the config file's folder.

A relative path in the file (a SQLite ``database_url``, a Maildir, the file outbox,
``templates_dir``, a CA, key or secret file) is relative to the file's folder, not to
where mailbot was started: ``mailbot status`` run from another folder finds the same
database. ``MAILBOT_DATABASE_URL`` and a SQL source's ``url_env`` have no file of their
own and count from the config file's folder too (mailbot.config.secrets). Settings made
from a dict with no file (tests) keep relative paths as given, relative to the working
directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

# The keys that name a file or folder (in any table); a test checks that every key whose
# name says it is a path is here. ``database_url`` and a SQL source's ``url`` are URLs: a
# SQLite one's path is made absolute the same way.
PATH_KEYS = frozenset({"templates_dir", "texts_dir", "path", "file_outbox", "ca_file",
                       "client_secret_file", "certificate_file", "service_account_file",
                       "secret_key_file"})
URL_KEYS = frozenset({"database_url", "url"})


def folder_of(source: str) -> str | None:
    """The absolute folder of the config file; None for settings made without a file."""
    if not source or source.startswith("<"):
        return None
    return os.path.dirname(os.path.abspath(source))


def absolute_paths(section: Any, base: str) -> Any:
    """``section`` (a settings dataclass) with every relative path in it, at any depth,
    joined to ``base``."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, str) and f.name in PATH_KEYS:
            new: Any = _absolute(value, base)
        elif isinstance(value, str) and f.name in URL_KEYS:
            new = absolute_sqlite_url(value, base)
        elif dataclasses.is_dataclass(value):
            new = absolute_paths(value, base)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            new = tuple(absolute_paths(item, base) for item in value)
        else:
            continue
        if new != value:
            changes[f.name] = new
    return dataclasses.replace(section, **changes) if changes else section


def _absolute(path: str, base: str) -> str:
    return os.path.join(base, path) if path and not os.path.isabs(path) else path


_SQLITE_URL = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", re.DOTALL)


def absolute_sqlite_url(url: str, base: str) -> str:
    """``url`` with a relative SQLite file path joined to ``base``; any other URL (an
    absolute path, ``:memory:``, a ``file:`` URI, another database) as it is.

    Done on the text, without SQLAlchemy (a third of a second to import, which a config
    read does not otherwise need): SQLAlchemy percent-decodes the path, so ``base`` goes
    in percent-encoded and the path's own text is kept as written."""
    from urllib.parse import quote, unquote

    m = _SQLITE_URL.fullmatch(url)
    if m is None:
        return url
    scheme, path, query = m.group(1), m.group(2), m.group(3) or ""
    plain = unquote(path)
    if not plain or plain.startswith(("/", ":memory:", "file:")):
        return url
    return f"{scheme}{quote(base, safe='/')}/{path}{query}"


def left_behind(written: str, resolved: str) -> str | None:
    """The database a relative SQLite ``database_url`` meant before 0.2.0, when it is still
    there and the config's folder has none: mailbot 0.1 counted the path from the working
    directory (the unit's ``WorkingDirectory``, /var/lib/mailbot). Opening the resolved path
    would create a new, empty database and answer every patron from it (no readers, no
    codes, no ledger), so the caller refuses; None when there is no such trap."""
    if written == resolved:
        return None  # absolute, :memory:, another database: nothing moved
    old = _SQLITE_URL.fullmatch(written)
    new = _SQLITE_URL.fullmatch(resolved)
    if old is None or new is None:
        return None
    from urllib.parse import unquote

    before = os.path.abspath(unquote(old.group(2)))
    after = unquote(new.group(2))
    if before != after and os.path.isfile(before) and not os.path.exists(after):
        return before
    return None
