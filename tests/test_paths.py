"""Paths and files: a relative path in the config counts from the config file's folder; a
command that only reads creates no database; the database is 0600; root is refused the
service user's database (it would leave root's files beside it)."""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from mailbot.cli import main
from mailbot.config import load_settings, settings_from_dict
from mailbot.config.paths import PATH_KEYS
from mailbot.db.files import check_database_file
from mailbot.db.session import open_database
from mailbot.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534

CONFIG = """
database_url = "sqlite:///data/m.db"
templates_dir = "templates"

[smtp]
file_outbox = "outbox"
ca_file = "pki/relay-ca.pem"

[web]
secret_key_file = "keys/web.key"

[[libraries]]
id = "a"
name = "A"
reader_source = "sip2"

[libraries.sip2]
ca_file = "pki/sip2-ca.pem"

[[mailboxes]]
library = "a"
address = "ebooki@a.example.org"
type = "maildir"
path = "Maildir"

[[mailboxes]]
library = "a"
address = "filia@a.example.org"
username = "filia@a.example.org"
password = "p"
ca_file = "/etc/ssl/imap-ca.pem"
auth = "oauth2-google"

[mailboxes.oauth]
service_account_file = "keys/sa.json"
"""


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = CONFIG) -> Path:
    """The config in tmp_path/etc, the working directory elsewhere (tmp_path/elsewhere)."""
    etc = tmp_path / "etc"
    (etc / "keys").mkdir(parents=True)
    (etc / "keys" / "sa.json").write_text("{}")  # checked readable at load
    (etc / "mailbot.toml").write_text(text)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return etc / "mailbot.toml"


def test_relative_paths_count_from_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    # Loaded from another folder, by a relative name: every relative path is under etc/;
    # the absolute one stays as written.
    _setup(tmp_path, monkeypatch)
    settings = load_settings("../etc/mailbot.toml")
    etc = str(tmp_path / "etc")
    assert settings.database_url == f"sqlite:///{etc}/data/m.db"
    assert settings.templates_dir == f"{etc}/templates"
    assert settings.smtp.file_outbox == f"{etc}/outbox"
    assert settings.smtp.ca_file == f"{etc}/pki/relay-ca.pem"
    assert settings.web.secret_key_file == f"{etc}/keys/web.key"
    assert settings.libraries[0].sip2.ca_file == f"{etc}/pki/sip2-ca.pem"
    maildir, imap = settings.mailboxes
    assert maildir.path == f"{etc}/Maildir" and maildir.key == f"maildir:{etc}/Maildir"
    assert imap.ca_file == "/etc/ssl/imap-ca.pem"
    assert imap.oauth.service_account_file == f"{etc}/keys/sa.json"
    assert settings.source == "../etc/mailbot.toml"  # errors name the file as it was given


def test_the_default_database_is_beside_the_config_file(tmp_path, monkeypatch):
    # No database_url: mailbot.db beside the config, wherever mailbot is started.
    path = _setup(tmp_path, monkeypatch, '[[libraries]]\nid = "a"\nname = "A"\n')
    assert load_settings(path).database_url == f"sqlite:///{tmp_path}/etc/mailbot.db"


def test_a_relative_database_url_from_the_environment_counts_from_the_config_too(
        tmp_path, monkeypatch):
    # MAILBOT_DATABASE_URL has no file of its own: the config's folder, as the key.
    path = _setup(tmp_path, monkeypatch)
    monkeypatch.setenv("MAILBOT_DATABASE_URL", "sqlite:///other.db")
    assert load_settings(path).database_url == f"sqlite:///{tmp_path}/etc/other.db"
    monkeypatch.setenv("MAILBOT_DATABASE_URL", "postgresql+psycopg://bot@db/mailbot")
    assert load_settings(path).database_url == "postgresql+psycopg://bot@db/mailbot"


def test_a_command_run_elsewhere_uses_the_database_beside_the_config(tmp_path, monkeypatch):
    # `mailbot db upgrade` started in another folder makes the database under etc/data,
    # none in the working directory; `status` from a third folder then finds it.
    path = _setup(tmp_path, monkeypatch, 'database_url = "sqlite:///data/m.db"\n'
                  '[[libraries]]\nid = "a"\nname = "A"\n')
    (tmp_path / "etc" / "data").mkdir()
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    assert (tmp_path / "etc" / "data" / "m.db").is_file()
    assert os.listdir(tmp_path / "elsewhere") == []
    (tmp_path / "third").mkdir()
    monkeypatch.chdir(tmp_path / "third")
    assert main(["--config", str(path), "status"]) in (0, 1)
    assert os.listdir(tmp_path / "third") == []


def test_sqlite_urls_are_made_absolute_exactly(tmp_path):
    # A folder with a space and a percent sign, a path with an escape of its own, a query:
    # SQLAlchemy reads back the very file meant. Other URLs are left as written.
    from mailbot.config.paths import absolute_sqlite_url

    base = str(tmp_path / "my conf 100%")
    cases = {"sqlite:///m.db": f"{base}/m.db",
             "sqlite:///data/a%20b.db?timeout=5": f"{base}/data/a b.db",
             "sqlite+pysqlite:///x.db": f"{base}/x.db"}
    for url, path in cases.items():
        resolved = make_url(absolute_sqlite_url(url, base))
        assert resolved.database == path, url
        assert resolved.get_backend_name() == "sqlite"
    assert make_url(absolute_sqlite_url("sqlite:///m.db?timeout=5", base)).query == {"timeout": "5"}
    for url in ("sqlite:////var/lib/mailbot/mailbot.db", "sqlite://", "sqlite:///:memory:",
                "sqlite:///file:m.db?mode=ro&uri=true", "postgresql://bot@db/mailbot",
                "mysql+pymysql://koha:pw@koha/koha"):
        assert absolute_sqlite_url(url, base) == url


def test_settings_without_a_file_keep_relative_paths():
    # Tests and code that build settings from a dict (no file) keep paths as given.
    s = settings_from_dict({"database_url": "sqlite:///m.db", "templates_dir": "t",
                            "libraries": [{"id": "a", "name": "A"}]})
    assert (s.database_url, s.templates_dir) == ("sqlite:///m.db", "t")


def test_every_key_that_names_a_file_is_made_absolute():
    # A new *_file / *_dir / path key is resolved like the others, or this test names it.
    from mailbot.config import (
        DaemonSettings,
        ImportSettings,
        LibrarySettings,
        MailboxSettings,
        OAuthSettings,
        Settings,
        Sip2SourceSettings,
        SmtpSettings,
        SqlSourceSettings,
        WebSettings,
    )

    names = {f.name for cls in (Settings, SmtpSettings, LibrarySettings, MailboxSettings,
                                SqlSourceSettings, Sip2SourceSettings, DaemonSettings,
                                WebSettings, ImportSettings, OAuthSettings)
             for f in dataclasses.fields(cls)}
    looks_like_a_path = {n for n in names
                         if n.endswith(("_file", "_dir", "_path")) or n in ("path", "file_outbox")}
    assert looks_like_a_path <= PATH_KEYS, looks_like_a_path - PATH_KEYS
    assert PATH_KEYS <= names


# -- the database file --------------------------------------------------------------------


def test_a_reading_command_does_not_create_a_database(tmp_path):
    # create=False where there is no file: BadInput naming the absolute path, and no file.
    db = tmp_path / "mailbot.db"
    with pytest.raises(BadInput, match=rf"no database at {db}: mailbot db upgrade creates it "
                                       r"\(or the first mailbot run\)"):
        open_database(f"sqlite:///{db}", create=False)
    assert os.listdir(tmp_path) == []
    open_database(f"sqlite:///{db}")  # the default makes it ...
    open_database(f"sqlite:///{db}", create=False)  # ... and then it is there


def test_the_dashboard_key_file_is_private_whatever_the_umask(tmp_path):
    # web-secret.key is made 0600 beside the database on first start (the database's own
    # modes: tests/db/test_file_modes.py).
    from mailbot.web.auth import secret_key

    settings = settings_from_dict({"database_url": f"sqlite:///{tmp_path}/mailbot.db",
                                   "libraries": [{"id": "a", "name": "A"}]},
                                  source=str(tmp_path / "mailbot.toml"))
    old = os.umask(0)
    try:
        key = secret_key(settings)
    finally:
        os.umask(old)
    path = tmp_path / "web-secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) >= 32
    assert secret_key(settings) == key


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A folder under /tmp that belongs to user nobody (pytest's tmp_path is root's 0700:
    nobody could not enter it)."""
    path = Path(tempfile.mkdtemp(prefix="mailbot-nobody-"))
    os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


@functools.cache
def _python_for_nobody() -> str:
    """This Python, or (when it lives where nobody may not go, as under /root) the system's
    of the same version, which reads the same packages."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (os.path.realpath(sys.executable), f"/usr/bin/{version}",
                   f"/usr/local/bin/{version}"):
        try:
            subprocess.run([python, "-c", ""], user=NOBODY, group=NOBODY, extra_groups=[],
                           cwd="/", check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.CalledProcessError):
            continue
        return python
    pytest.fail(f"no {version} that user nobody may run")


def _as_nobody(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a process of user nobody (uid, gid and no other groups)."""
    import sysconfig

    packages = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"],
                                sysconfig.get_paths()["platlib"]])
    return subprocess.run([_python_for_nobody(), "-c", textwrap.dedent(script), *args],
                          user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": packages,
                               "PYTHONDONTWRITEBYTECODE": "1"})


OPEN = """
    import os, sys
    from mailbot.db.session import open_database
    from mailbot.errors import BadInput
    os.umask(0o022)
    try:
        sessions = open_database("sqlite:///" + sys.argv[1])
    except BadInput as exc:
        print("refused:", exc)
    else:
        from mailbot.db.session import sync_config
        from mailbot.config import settings_from_dict
        sync_config(sessions, settings_from_dict({"libraries": [{"id": "a", "name": "A"}]}))
        sessions.kw["bind"].dispose()  # the last connection: SQLite removes -wal and -shm
        print("opened")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_root_is_refused_another_users_database_and_the_owner_is_not(nobodys_dir):
    # The service user (here: nobody) makes and writes its database; root opening it
    # after is refused, BadInput naming the user and the sudo to use, and leaves no file.
    db = nobodys_dir / "mailbot.db"
    run = _as_nobody(OPEN, str(db))
    assert run.stdout.strip() == "opened", run.stderr
    owners = {p.name: (p.stat().st_uid, stat.S_IMODE(p.stat().st_mode))
              for p in nobodys_dir.iterdir()}
    assert owners == {"mailbot.db": (NOBODY, 0o600)}  # -wal/-shm gone with the last connection
    with pytest.raises(BadInput, match=rf"{db} belongs to user nobody: run this as that user "
                                       r"\(sudo -u nobody mailbot \.\.\.\)"):
        open_database(f"sqlite:///{db}")
    assert sorted(os.listdir(nobodys_dir)) == ["mailbot.db"]
    # Not there yet: the folder's owner counts (root would make the database root's).
    fresh = nobodys_dir / "new.db"
    with pytest.raises(BadInput, match=rf"{nobodys_dir} \(where new.db would be made\) "
                                       "belongs to user nobody"):
        open_database(f"sqlite:///{fresh}")
    assert not fresh.exists()
    # As the owner, or root on root's own: no refusal.
    check_database_file(f"sqlite:///{db}", euid=NOBODY)
    with pytest.raises(BadInput, match=rf"no folder {nobodys_dir}/x for the database: "
                                       "mailbot init makes it; or fix database_url"):
        check_database_file(f"sqlite:///{nobodys_dir}/x/y.db")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_another_user_that_cannot_write_the_database_is_told_whose_it_is():
    # nobody opening root's 0600 database: a BadInput naming the owner, not SQLite's
    # "unable to open database file" from deep inside.
    folder = Path(tempfile.mkdtemp(prefix="mailbot-root-"))
    try:
        folder.chmod(0o755)
        db = folder / "mailbot.db"
        open_database(f"sqlite:///{db}")
        run = _as_nobody(OPEN, str(db))
        assert run.stdout.strip() == (f"refused: cannot open {db}: it belongs to user root "
                                      "(mode 0600): run this as that user (sudo -u root "
                                      "mailbot ...)"), run.stderr
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_mailbot_backup_as_root_leaves_no_file_of_roots_beside_the_database(nobodys_dir):
    # Why `mailbot backup` may run as root (root's cron, a backup agent): on the service
    # user's live database — its -wal and -shm there, as while the daemon runs — the
    # copy is root's own file elsewhere, and every file beside the database is still
    # nobody's afterwards (SQLite gives the -wal and -shm files it opens as root the
    # database's owner; the backup writes nothing else there).
    from mailbot.db.backup import backup_database

    db = nobodys_dir / "mailbot.db"
    assert _as_nobody(OPEN, str(db)).stdout.strip() == "opened"
    assert os.listdir(nobodys_dir) == ["mailbot.db"]  # no -wal, -shm: the backup makes them
    copy = nobodys_dir.parent / f"{nobodys_dir.name}-copy.db"
    try:
        line = backup_database(f"sqlite:///{db}", str(copy))
        assert line.startswith(f"backup of {db} written to {copy}")
        assert copy.stat().st_uid == 0 and stat.S_IMODE(copy.stat().st_mode) == 0o600
    finally:
        copy.unlink(missing_ok=True)
    owners = {p.name: p.stat().st_uid for p in nobodys_dir.iterdir()}
    assert set(owners) <= {"mailbot.db", "mailbot.db-wal", "mailbot.db-shm"}, owners
    assert set(owners.values()) == {NOBODY}, owners
    # And with the -wal and -shm there already (nobody's process has the database open).
    live = _as_nobody_holding(db)
    try:
        assert {"mailbot.db-wal", "mailbot.db-shm"} <= set(os.listdir(nobodys_dir))
        backup_database(f"sqlite:///{db}", str(copy))
        assert _integrity(copy) == "ok"
    finally:
        live.stdin.close()
        live.wait(30)
        copy.unlink(missing_ok=True)
    owners = {p.name: p.stat().st_uid for p in nobodys_dir.iterdir()}
    assert set(owners.values()) == {NOBODY}, owners


def _as_nobody_holding(db: Path) -> subprocess.Popen[str]:
    """A process of nobody's that keeps ``db`` open (its -wal and -shm there) until its
    stdin is closed."""
    import sysconfig

    script = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
              "c.execute(\"INSERT INTO libraries (id, name) VALUES ('held', 'H')\")\n"
              "print('holding', flush=True)\nsys.stdin.read()\n")
    packages = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    proc = subprocess.Popen([_python_for_nobody(), "-c", script, str(db)], user=NOBODY,
                            group=NOBODY, extra_groups=[], cwd="/", stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": packages})
    assert proc.stdout.readline() == "holding\n"
    return proc


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_run_as_root_on_another_users_database_leaves_no_file_of_roots(
        tmp_path, nobodys_dir, capsys):
    # `mailbot run --once` as root on the service user's database: exit 2 naming the
    # user, refused before its lock file (<db>.running) is made, so nothing of root's is
    # left beside the database.
    db = nobodys_dir / "mailbot.db"
    assert _as_nobody(OPEN, str(db)).stdout.strip() == "opened"
    config = tmp_path / "mailbot.toml"
    config.write_text(f'database_url = "sqlite:///{db}"\n[[libraries]]\nid = "a"\n'
                      'name = "A"\n')
    capsys.readouterr()
    assert main(["--config", str(config), "run", "--once"]) == 2
    err = capsys.readouterr().err
    assert f"{db} belongs to user nobody: run this as that user (sudo -u nobody" in err
    owners = {p.name: p.stat().st_uid for p in nobodys_dir.iterdir()}
    assert owners == {"mailbot.db": NOBODY}, owners


def test_a_missing_database_folder_is_named_not_a_traceback(tmp_path, monkeypatch, capsys):
    # database_url in a folder that is not there: each command that would create the
    # database exits 2 naming the folder (it was SQLAlchemy's or the lock file's
    # traceback), and creates nothing.
    path = _setup(tmp_path, monkeypatch, 'database_url = "sqlite:///missing/m.db"\n'
                  '[[libraries]]\nid = "a"\nname = "A"\n')
    readers = tmp_path / "readers.csv"
    readers.write_text("numer_karty;imie;nazwisko\n0001;Ala;Nowak\n", encoding="utf-8")
    folder = tmp_path / "etc" / "missing"
    for args in (["run", "--once"], ["import-readers", str(readers), "--library", "a"]):
        capsys.readouterr()
        assert main(["--config", str(path), *args]) == 2, args
        assert (f"no folder {folder} for the database: mailbot init makes it; or fix "
                "database_url") in capsys.readouterr().err, args
    assert not folder.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_a_folder_the_user_cannot_write_is_named_with_its_owner():
    # nobody making a database in root's 0755 folder: BadInput naming the folder, its
    # owner and mode, not SQLite's "unable to open database file".
    folder = Path(tempfile.mkdtemp(prefix="mailbot-root-"))
    try:
        folder.chmod(0o755)
        run = _as_nobody(OPEN, str(folder / "mailbot.db"))
        assert run.stdout.strip() == (
            f"refused: the folder {folder} (where mailbot.db would be made) is not writable "
            "for user nobody: it belongs to user root (mode 0755): run this as that user "
            "(sudo -u root mailbot ...); or fix database_url"), run.stderr
        assert os.listdir(folder) == []
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


HOLD = """
    import sys
    from mailbot.db.running import holding_running
    from mailbot.errors import BadInput
    try:
        with holding_running("sqlite:///" + sys.argv[1]):
            print("holding")
    except BadInput as exc:
        print("refused:", exc)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_a_lock_file_another_user_made_is_named_with_its_owner(nobodys_dir):
    # <db>.running left 0600 by root (an older mailbot run by hand): the service user's
    # next start is a BadInput naming the file and its owner, not a PermissionError.
    db = nobodys_dir / "mailbot.db"
    assert _as_nobody(OPEN, str(db)).stdout.strip() == "opened"
    lock = nobodys_dir / "mailbot.db.running"
    os.close(os.open(lock, os.O_CREAT | os.O_WRONLY, 0o600))
    run = _as_nobody(HOLD, str(db))
    assert run.stdout.strip() == (
        f"refused: cannot open the lock file {lock}: it belongs to user root (mode 0600) "
        "and this is user nobody; run mailbot as the user that owns the database"), \
        run.stderr
    lock.unlink()
    assert _as_nobody(HOLD, str(db)).stdout.strip() == "holding"


BACKUP = """
    import sys
    from mailbot.db.backup import backup_database
    from mailbot.errors import BadInput
    try:
        print(backup_database("sqlite:///" + sys.argv[1], sys.argv[2]))
    except BadInput as exc:
        print("refused:", exc)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_a_backup_by_a_user_who_cannot_read_the_database_says_whose_it_is(nobodys_dir):
    # nobody backing up root's 0600 database: whose file it is and what to run.
    folder = Path(tempfile.mkdtemp(prefix="mailbot-root-"))
    try:
        folder.chmod(0o755)
        db = folder / "mailbot.db"
        open_database(f"sqlite:///{db}").kw["bind"].dispose()
        run = _as_nobody(BACKUP, str(db), str(nobodys_dir / "copy.db"))
        assert run.stdout.strip() == (
            f"refused: cannot read {db} as user nobody: it belongs to user root (mode "
            "0600): run this as that user (sudo -u root mailbot ...)"), run.stderr
        assert os.listdir(nobodys_dir) == []
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
