"""``mailbot backup`` / ``mailbot restore`` of a live SQLite database (issue 18; SPEC 4):
a backup is a consistent snapshot even while a burst is being answered, a restore puts
every issued code back, and a restore refuses while a mailbot process works on the
database. Real processes, real Dovecot in, real aiosmtpd out.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailbot.cli import main
from mailbot.db.backup import backup_database, restore_database
from mailbot.db.migrate import HEAD, upgrade
from mailbot.db.running import holding_running, running_path
from mailbot.errors import MailbotError
from tests.botenv import make_bot, request_mail, valid_reader
from tests.chaos import KILLABLE_DAEMON, DaemonProcess, db_counts, multiappend, wait_until

POLICY = "reminder_days = 0\n"


def _bot(tmp_path: Path, imap_user, smtp_sink, *, patrons: int, codes: int):
    """A bot whose mailbox holds one request from each of ``patrons`` readers."""
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], tables=KILLABLE_DAEMON,
                   policy=POLICY)
    w = bot.window()
    assert bot.import_codes([f"BACK-{i:06d}" for i in range(1, codes + 1)]) == 0
    if patrons:
        assert bot.import_readers([f"08{i:05d};Ola;Backup{i};b{i}@patron.test;"
                                   f"{valid_reader(w.year)}"
                                   for i in range(1, patrons + 1)]) == 0
        multiappend(imap_user, [
            (request_mail(f"b{i}@patron.test", "LEGIMI", f"Ola Backup{i}\n08{i:05d}")[0],
             w + timedelta(seconds=30 + i // 3)) for i in range(1, patrons + 1)])
    return bot


def _mailbot(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config),
                                 *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _read(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _issued(path: Path) -> dict[str, tuple[int, str, str]]:
    """code -> (request id, the request's Message-ID, its card) for every issued code."""
    conn = _read(path)
    try:
        return {code: (rid, mid, card) for code, rid, mid, card in conn.execute(
            "SELECT c.code, r.id, r.message_id, r.card_number FROM codes c "
            "JOIN requests r ON r.id = c.request_id WHERE c.issued_at IS NOT NULL")}
    finally:
        conn.close()


def _integrity(path: Path) -> str:
    conn = _read(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _torn(path: Path) -> list[str]:
    """What a copy made between two commits would show: requests issued without their
    code, codes without their ledger entry or their reply."""
    conn = _read(path)
    try:
        checks = {
            "issued requests without a code": "SELECT count(*) FROM requests r WHERE "
            "r.outcome = 'issued' AND NOT EXISTS (SELECT 1 FROM codes c "
            "WHERE c.request_id = r.id)",
            "codes without a ledger entry": "SELECT count(*) FROM codes c WHERE "
            "c.issued_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger l "
            "WHERE l.code_id = c.id)",
            "decided requests without their reply": "SELECT count(*) FROM requests r "
            "WHERE r.state = 'decided' AND r.outcome NOT IN ('rate_limited') AND NOT "
            "EXISTS (SELECT 1 FROM outbox o WHERE o.request_id = r.id)",
        }
        return [what for what, sql in checks.items() if conn.execute(sql).fetchone()[0]]
    finally:
        conn.close()


def _dump(path: Path) -> list[str]:
    conn = _read(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backups_during_a_burst_are_snapshots_and_the_last_one_restores_every_code(
        tmp_path, imap_user, smtp_sink):
    # Backups taken in a loop while a real `run --once` answers 600 requests: each one
    # taken mid-burst is whole (integrity_check ok, no half-written batch) and every code
    # it shows issued went to the same request in the end; the one taken after the run,
    # restored into a new place, holds every issued code with its request.
    patrons, codes = 600, 500
    bot = _bot(tmp_path, imap_user, smtp_sink, patrons=patrons, codes=codes)
    url = bot.settings().database_url
    backups = tmp_path / "backups"
    backups.mkdir()
    run = _mailbot(bot.config, "run", "--once", log=tmp_path / "run.log")
    taken: list[tuple[Path, bool]] = []  # (backup, taken after the run had ended)
    try:
        deadline = time.monotonic() + 90
        while True:
            ended = run.poll() is not None
            path = backups / f"mailbot-{len(taken):03d}.db"
            line = backup_database(url, str(path))
            assert line.startswith(f"backup of {tmp_path / 'mailbot.db'} written to {path}")
            taken.append((path, ended))
            if ended:
                break
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.02)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()
    assert db_counts(tmp_path / "mailbot.db").sent == patrons

    final = _issued(tmp_path / "mailbot.db")
    assert len(final) == codes
    during = [path for path, ended in taken if not ended]
    partial = 0
    for path in during:
        assert _integrity(path) == "ok", path
        assert _torn(path) == [], path
        snapshot = _issued(path)
        assert snapshot.items() <= final.items(), path  # same code, same request
        partial += 0 < len(snapshot) < codes
    print(f"{len(during)} backups taken during the burst, {partial} of them half-way")
    assert partial, f"no backup caught the burst half-way ({len(during)} taken during it)"

    last = taken[-1][0]
    assert _mode(last) == 0o600
    assert not Path(f"{last}-wal").exists()  # one self-contained file
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    line = restore_database(f"sqlite:///{fresh}/mailbot.db", str(last))
    assert line.startswith(f"restored {fresh / 'mailbot.db'} from {last} (schema {HEAD}, "
                           f"{codes} codes issued)")
    assert _issued(fresh / "mailbot.db") == final
    assert _mode(fresh / "mailbot.db") == 0o600


def test_restore_refuses_while_the_daemon_runs_and_works_once_it_is_stopped(
        tmp_path, imap_user, smtp_sink, capsys):
    # A real `mailbot run` holds the database: restore exits 1 naming the process and
    # how to stop it, and changes nothing; after SIGTERM the same restore succeeds.
    bot = _bot(tmp_path, imap_user, smtp_sink, patrons=0, codes=3)
    backup = tmp_path / "before-codes.db"
    assert bot.cli("backup", str(backup)) == 0
    assert bot.import_codes(["LATE-0001"]) == 0  # the restore is to take this away
    db = tmp_path / "mailbot.db"
    lock = running_path(bot.settings().database_url)
    daemon = DaemonProcess(bot.config, tmp_path)
    daemon.start()
    try:
        assert daemon.wait_for_log("mailbot running:", 30), daemon.log_text()
        assert lock.exists() and lock.read_text().split(" ")[0] == str(daemon.proc.pid)
        capsys.readouterr()
        assert bot.cli("restore", str(backup)) == 1
        err = capsys.readouterr().err
        assert "a mailbot process is running on the database" in err
        assert f"process {daemon.proc.pid}" in err and "systemctl stop mailbot" in err
        assert not list(tmp_path.glob("mailbot.db.before-restore-*"))
        assert _count_codes(db) == 4
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()
    assert bot.cli("restore", str(backup)) == 0
    out = capsys.readouterr().out
    assert f"restored {db} from {backup} (schema {HEAD}, 0 codes issued)" in out
    assert _count_codes(db) == 3
    kept = list(tmp_path.glob("mailbot.db.before-restore-*"))
    assert len(kept) == 1 and f"kept as {kept[0]}" in out
    assert _count_codes(kept[0]) == 4 and _mode(kept[0]) == 0o600


def test_restore_refuses_while_a_killed_runs_sending_process_still_sends(
        tmp_path, imap_user, smtp_sink, capsys):
    # `run --once` SIGKILLed in a burst leaves its sending process to send what was
    # decided: that process holds the database too, until it is done.
    bot = _bot(tmp_path, imap_user, smtp_sink, patrons=250, codes=250)
    backup = tmp_path / "empty.db"
    assert bot.cli("backup", str(backup)) == 0
    smtp_sink.data_delay = 0.01  # seconds of sending left after the kill
    run = _mailbot(bot.config, "run", "--once", log=tmp_path / "run.log")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) > 20, 60), \
            (tmp_path / "run.log").read_text()
    finally:
        run.kill()
        run.wait()
    assert len(smtp_sink.messages) < 200, "the sending process had nearly finished"
    capsys.readouterr()
    assert bot.cli("restore", str(backup)) == 1
    assert "a mailbot process is running on the database" in capsys.readouterr().err
    smtp_sink.data_delay = 0.0
    # Once it has sent what was decided it ends, and the database is free; the codes the
    # run issued after the backup are discarded (--discard-newer), expired.
    url = bot.settings().database_url
    assert wait_until(lambda: _restored(url, backup), 60)
    assert _count_codes(tmp_path / "mailbot.db", issued=True) == 0
    assert _count_codes(tmp_path / "mailbot.db", expired=True) > 20


def _restored(url: str, backup: Path) -> bool:
    """restore --discard-newer; False while a mailbot process holds the database."""
    try:
        restore_database(url, str(backup), discard_newer=True)
    except MailbotError as exc:
        assert "a mailbot process is running on the database" in str(exc)
        return False
    return True


def test_restore_refuses_while_the_demo_serves_its_dashboard(tmp_path, capsys):
    # `mailbot demo` serving its dashboard works on its database (it answers mail
    # dropped into its Maildir): a backup of it is fine, a restore refuses until Ctrl-C.
    demo = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "demo", "--dir", str(demo),
                             "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        while not lines or not lines[-1].startswith("(Ctrl-C stops it)"):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        config = str(demo / "mailbot.toml")
        backup = tmp_path / "demo-backup.db"
        assert main(["--config", config, "backup", str(backup)]) == 0
        capsys.readouterr()
        assert main(["--config", config, "restore", str(backup)]) == 1
        assert f"process {proc.pid}" in capsys.readouterr().err
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert main(["--config", config, "restore", str(backup)]) == 0


def _count_codes(path: Path, *, issued: bool = False, expired: bool = False) -> int:
    conn = _read(path)
    try:
        where = " WHERE issued_at IS NOT NULL" if issued else \
            " WHERE expired_at IS NOT NULL" if expired else ""
        return conn.execute(f"SELECT count(*) FROM codes{where}").fetchone()[0]
    finally:
        conn.close()


def test_a_starting_process_waits_for_a_restore_and_then_holds_the_database(tmp_path):
    # While a restore holds the database exclusively, a process starting on it waits;
    # the moment the restore is done, it runs. A second holder is no obstacle.
    url = f"sqlite:///{tmp_path}/mailbot.db"
    script = ("import sys, time\nfrom mailbot.db.running import holding_running\n"
              "with holding_running(sys.argv[1]):\n    print('holding', flush=True)\n"
              "    time.sleep(float(sys.argv[2]))\n")
    from mailbot.db.running import holding_alone

    with holding_alone(url):
        child = subprocess.Popen([sys.executable, "-c", script, url, "0"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        assert child.poll() is None  # still waiting
    assert child.stdout.readline() == "holding\n"
    assert child.wait(10) == 0
    with holding_running(url), holding_running(url):
        pass


def test_restore_puts_a_backup_back_over_a_database_whose_wal_holds_commits(tmp_path):
    # The database being replaced has commits only in its -wal (a connection keeps it
    # open, no checkpoint): the restored database is the backup, and the copy kept
    # aside is the replaced database with those commits.
    db = tmp_path / "mailbot.db"
    url = f"sqlite:///{db}"
    from mailbot.db.session import open_database

    sessions = open_database(url)
    sessions.kw["bind"].dispose()
    backup = tmp_path / "backup.db"
    backup_database(url, str(backup))
    live = sqlite3.connect(db, isolation_level=None)
    live.execute("PRAGMA wal_autocheckpoint = 0")
    live.execute("INSERT INTO libraries (id, name) VALUES ('wal-only', 'W')")
    assert Path(f"{db}-wal").stat().st_size > 0
    try:
        line = restore_database(url, str(backup))
        assert live.execute("SELECT count(*) FROM libraries").fetchone()[0] == 0
    finally:
        live.close()
    kept = next(tmp_path.glob("mailbot.db.before-restore-*"))
    assert f"kept as {kept}" in line
    conn = _read(kept)
    assert conn.execute("SELECT id FROM libraries").fetchall() == [("wal-only",)]
    conn.close()
    conn = _read(db)
    assert conn.execute("SELECT count(*) FROM libraries").fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_restoring_an_older_schema_says_db_upgrade_brings_it_up(tmp_path, capsys):
    # A backup made by the previous schema is restored as it is, and the message says
    # that `mailbot db upgrade` brings it up; it does.
    old = tmp_path / "old.db"
    upgrade(create_engine(f"sqlite:///{old}"), "0003")
    bot = _config_only(tmp_path, f"sqlite:///{tmp_path}/mailbot.db")
    assert bot.cli("restore", str(old)) == 0
    out = capsys.readouterr().out
    assert "schema 0003" in out and f"older than this mailbot's {HEAD}" in out
    assert "`mailbot db upgrade`" in out
    assert bot.cli("db", "upgrade") == 0
    conn = _read(tmp_path / "mailbot.db")
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD
    conn.close()


def _config_only(tmp_path: Path, database_url: str):
    from types import SimpleNamespace

    return make_bot(tmp_path, smtp=SimpleNamespace(host="127.0.0.1", port=1), mailboxes=[],
                    database_url=database_url)


@pytest.mark.parametrize("case", ["dest exists", "no such folder", "postgresql"])
def test_backup_refuses_bad_input_with_exit_2(tmp_path, capsys, case):
    # A file is never overwritten, a missing folder is named, and PostgreSQL is sent to
    # pg_dump with the command to type (no password in it).
    url = f"sqlite:///{tmp_path}/mailbot.db"
    if case == "postgresql":
        url = "postgresql+psycopg://mailbot:s3cret-pw@db.example.org:5433/mailbot"
    bot = _config_only(tmp_path, url)
    if case != "postgresql":
        assert bot.cli("db", "upgrade") == 0
    dest = tmp_path / "copy.db"
    if case == "dest exists":
        dest.write_text("an earlier backup")
    elif case == "no such folder":
        dest = tmp_path / "missing" / "copy.db"
    capsys.readouterr()
    assert bot.cli("backup", str(dest)) == 2
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err
    if case == "dest exists":
        assert f"{dest}: exists already" in err
        assert dest.read_text() == "an earlier backup"
    elif case == "no such folder":
        assert f"the folder {dest.parent} does not exist" in err
    else:
        assert "pg_dump -Fc -h db.example.org -p 5433 -U mailbot -f FILE mailbot" in err
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize("case", ["not a database", "not mailbot's", "newer schema",
                                  "no such file", "postgresql"])
def test_restore_refuses_bad_input_with_exit_2_and_changes_nothing(tmp_path, capsys, case):
    # A file that is not a mailbot backup, or one made by a newer mailbot, is refused,
    # naming the file; the database stays as it was and nothing is kept aside.
    db = tmp_path / "mailbot.db"
    url = f"sqlite:///{db}"
    if case == "postgresql":
        url = "postgresql+psycopg://mailbot:s3cret-pw@db.example.org/mailbot"
    bot = _config_only(tmp_path, url)
    src = tmp_path / "src.db"
    if case == "not a database":
        src.write_text("numer_karty;imie\n0001;Ala\n" * 100)
    elif case == "not mailbot's":
        sqlite3.connect(src).execute("CREATE TABLE t (x)").connection.close()
    elif case in ("newer schema", "postgresql"):
        other = tmp_path / "other.db"
        upgrade(create_engine(f"sqlite:///{other}"))
        backup_database(f"sqlite:///{other}", str(src))
        conn = sqlite3.connect(src)
        with conn:
            if case == "newer schema":
                conn.execute("UPDATE alembic_version SET version_num = '9999'")
        conn.close()
    if case != "postgresql":
        assert bot.cli("db", "upgrade") == 0
        before = _dump(db)
    capsys.readouterr()
    assert bot.cli("restore", str(src)) == 2
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err
    expected = {
        "not a database": f"{src}: is not a SQLite database",
        "not mailbot's": f"{src}: is not a mailbot database",
        "newer schema": f"{src}: was made by a newer mailbot (schema 9999; this one "
                        f"knows up to {HEAD})",
        "no such file": f"{src}: no such file",
        "postgresql": "pg_restore --clean --if-exists --single-transaction "
                      "-h db.example.org -U mailbot -d mailbot FILE",
    }[case]
    assert expected in err
    if case != "postgresql":
        assert _dump(db) == before
        assert not list(tmp_path.glob("mailbot.db.before-restore-*"))


def _free(path: Path) -> list[str]:
    """The codes mailbot may still hand out (mailbot.ledger.FREE)."""
    conn = _read(path)
    try:
        return [c for (c,) in conn.execute(
            "SELECT code FROM codes WHERE issued_at IS NULL AND activated_at IS NULL AND "
            "expired_at IS NULL ORDER BY code")]
    finally:
        conn.close()


def test_restoring_an_older_backup_never_frees_codes_issued_since(
        tmp_path, imap_user, smtp_sink, capsys):
    # Codes issued after the backup was made (three it holds unissued, one from a file
    # imported after it) would go to the next patrons a second time: restore refuses,
    # exit 1, naming how many and the latest issue, and changes nothing. With
    # discard_newer (--discard-newer) it restores and those codes are expired: the next
    # run hands out none of them, and their file cannot be imported again.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user], policy=POLICY)
    db = tmp_path / "mailbot.db"
    url = bot.settings().database_url
    assert bot.import_codes([f"BACK-{i}" for i in range(1, 4)]) == 0
    backup = tmp_path / "backup.db"
    assert bot.cli("backup", str(backup)) == 0
    assert bot.import_codes(["LATE-1", "LATE-2"]) == 0
    w = bot.window()
    assert bot.import_readers([f"0800{i};Ola;Nowa{i};n{i}@patron.test;{valid_reader(w.year)}"
                               for i in range(1, 6)]) == 0
    multiappend(imap_user, [
        (request_mail(f"n{i}@patron.test", "LEGIMI", f"Ola Nowa{i}\n0800{i}")[0],
         w + timedelta(seconds=30 + i)) for i in range(1, 5)])
    assert bot.run_once() == 0
    given = set(_issued(db))
    assert given == {"BACK-1", "BACK-2", "BACK-3", "LATE-1"}
    conn = _read(db)
    latest = conn.execute("SELECT max(issued_at) FROM codes").fetchone()[0]
    conn.close()
    latest = f"{datetime.fromisoformat(latest):%Y-%m-%d %H:%M:%S} UTC"

    before = _dump(db)
    capsys.readouterr()
    assert bot.cli("restore", str(backup)) == 1
    err = capsys.readouterr().err
    assert f"4 code(s) were issued in {db} after {backup} was made (the latest at {latest})" \
        in err
    assert "Restore a newer backup" in err and "--discard-newer" in err
    assert _dump(db) == before
    assert not list(tmp_path.glob("mailbot.db.before-restore-*"))
    assert not list(tmp_path.glob(".restore.*"))

    line = restore_database(url, str(backup), discard_newer=True)
    assert "4 code(s) issued after this backup was made" in line and latest in line
    assert "marked expired" in line
    kept = next(tmp_path.glob("mailbot.db.before-restore-*"))
    assert set(_issued(kept)) == given  # who got them stays in the kept copy
    assert _free(db) == []
    assert _count_codes(db, expired=True) == 4 and _count_codes(db, issued=True) == 0
    assert not list(tmp_path.glob(".restore.*"))

    # The next run (a fifth patron writes) hands out none of them: nothing is left.
    multiappend(imap_user, [(request_mail("n5@patron.test", "LEGIMI", "Ola Nowa5\n08005")[0],
                             w + timedelta(seconds=60))])
    sent_before = len(smtp_sink.messages)
    bot.run_once()
    assert _count_codes(db, issued=True) == 0
    replies = [m.message.get_body(("plain",)).get_content()
               for m in smtp_sink.messages[sent_before:]]
    assert replies and not any(code in text for text in replies for code in given)
    # LATE-1 is in the restored database (expired): its file is refused, not re-freed.
    capsys.readouterr()
    assert bot.import_codes(["LATE-1", "LATE-2"]) == 2
    assert "code already imported" in capsys.readouterr().err


def test_restore_over_a_database_sqlite_cannot_read_keeps_it_as_it_was(tmp_path, capsys):
    # The database is damaged (the reason one restores): it cannot be looked into for
    # codes issued since, so the restore goes ahead, keeps it aside byte for byte with
    # its -wal, and says so.
    db = tmp_path / "mailbot.db"
    bot = _config_only(tmp_path, f"sqlite:///{db}")
    from mailbot.db.session import open_database

    open_database(f"sqlite:///{db}").kw["bind"].dispose()  # no connection left open
    backup = tmp_path / "backup.db"
    backup_database(f"sqlite:///{db}", str(backup))
    garbage = b"not a database any more " * 1000
    db.write_bytes(garbage)
    Path(f"{db}-wal").write_bytes(b"x" * 100)
    capsys.readouterr()
    assert bot.cli("restore", str(backup)) == 0
    out = capsys.readouterr().out
    kept = next(tmp_path.glob("mailbot.db.before-restore-*[0-9Z]"))
    assert f"kept as {kept} (SQLite could not read it: file is not a database; so it was " \
        "not checked for codes issued after this backup was made)" in out
    assert kept.read_bytes() == garbage
    assert Path(f"{kept}-wal").read_bytes() == b"x" * 100
    assert _integrity(db) == "ok" and _dump(db) == _dump(backup)


def test_restore_refuses_while_an_import_writes(tmp_path, smtp_sink, capsys):
    # An import holds the running lock while it writes: a real `mailbot import-readers`
    # reading a file that is not finished yet (a FIFO: the writer is this test) makes a
    # restore refuse, naming it; once the import is done the restore goes through.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    assert bot.cli("db", "upgrade") == 0
    backup = tmp_path / "empty.db"
    assert bot.cli("backup", str(backup)) == 0
    fifo = tmp_path / "czytelnicy.csv"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(bot.config),
                             "import-readers", str(fifo), "--library", "lib"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lock = running_path(bot.settings().database_url)
        assert wait_until(lambda: lock.exists() and
                          lock.read_text().split(" ")[0] == str(proc.pid), 30)
        capsys.readouterr()
        assert bot.cli("restore", str(backup)) == 1
        assert f"process {proc.pid}" in capsys.readouterr().err
        with open(fifo, "w", encoding="utf-8") as f:  # the import reads it and ends
            f.write("numer_karty;imie;nazwisko;email\n0601234;Ala;Nowak;ala@patron.test\n")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert bot.cli("restore", str(backup)) == 0
