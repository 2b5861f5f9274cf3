"""The SQLite database holds patrons' data and the codes (issue 15): the file and its -wal
and -shm files are created readable by their owner only (0600), whatever the umask, and
the systemd unit runs mailbot with UMask=0077."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from mailbot.db.session import open_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def open_umask():
    """The usual umask of a shell or cron job: files 0644 unless mailbot says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_something(url: str) -> None:
    sessions = open_database(url)
    with sessions.begin() as session:
        session.execute(text("INSERT INTO libraries (id, name) VALUES ('lib', 'L')"))
    # The -wal and -shm files exist while a connection is open.
    return sessions


def test_a_new_database_and_its_wal_and_shm_files_are_0600(tmp_path, open_umask):
    # Created by mailbot under umask 022: mailbot.db, -wal and -shm are all 0600.
    db = tmp_path / "mailbot.db"
    sessions = _write_something(f"sqlite:///{db}")
    with sessions() as session:
        session.execute(text("SELECT count(*) FROM libraries")).scalar()
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists(), path
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
    sessions.kw["bind"].dispose()


def test_the_cli_creates_the_database_0600(tmp_path, open_umask):
    # `mailbot db upgrade` on a new installation: the file it creates is 0600.
    from types import SimpleNamespace

    from tests.botenv import make_bot

    bot = make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[])
    assert bot.cli("db", "upgrade") == 0
    url = bot.settings().database_url
    db = Path(url.removeprefix("sqlite:///"))
    assert db.exists() and _mode(db) == 0o600, oct(_mode(db))


def test_an_existing_world_readable_database_is_closed_to_others(tmp_path, open_umask):
    # A file an older mailbot left 0644 loses the world's access when next opened.
    db = tmp_path / "old.db"
    open_database(f"sqlite:///{db}").kw["bind"].dispose()
    os.chmod(db, 0o644)
    sessions = _write_something(f"sqlite:///{db}")
    assert _mode(db) & 0o007 == 0, oct(_mode(db))
    sessions.kw["bind"].dispose()


def test_the_systemd_unit_sets_a_private_umask():
    # Everything the daemon creates (database, -wal, -shm, the dashboard key) is private.
    unit = (ROOT / "deploy" / "mailbot.service").read_text()
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    assert "\nUMask=0077\n" in service
