"""The command line itself: --version, --help without the heavy imports, quiet libraries,
and `run --once`'s exit code when replies cannot be sent."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from mailbot import __version__
from mailbot.cli import SERVICE_CHOICES, main
from mailbot.config import SERVICES
from tests.botenv import make_bot, request_mail, valid_reader
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def _mailbot(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailbot", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_service_choices_are_the_configured_services() -> None:
    assert SERVICE_CHOICES == SERVICES


def test_version_is_the_package_version(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"mailbot {__version__}"
    # The installed metadata (pyproject's dynamic version) says the same.
    assert importlib.metadata.version("mailbot") == __version__


def test_help_speaks_to_users_and_imports_nothing_heavy() -> None:
    probe = ("import sys\n"
             "from mailbot.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('sqlalchemy', 'starlette', 'uvicorn', 'holidays', "
             "'pydantic', 'jinja2', 'alembic', 'apscheduler', 'babel', 'mailbot.config', "
             "'mailbot.db.models') if m in sys.modules]\n"
             "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "HEAVY []" in out, out
    assert "SPEC" not in out and "``" not in out
    assert "Exit codes" in out and "backup" in out and "init" in out


def test_ordinary_commands_do_not_show_the_libraries_info_lines(tmp_path: Path) -> None:
    config = tmp_path / "mailbot.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/m.db"\n', encoding="utf-8")
    quiet = _mailbot("--config", str(config), "db", "upgrade")
    assert quiet.returncode == 0, quiet.stderr
    assert "schema empty -> " in quiet.stdout
    assert "alembic" not in quiet.stderr and "INFO" not in quiet.stderr, quiet.stderr
    config.write_text(f'database_url = "sqlite:///{tmp_path}/n.db"\n', encoding="utf-8")
    verbose = _mailbot("--verbose", "--config", str(config), "db", "upgrade")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO alembic" in verbose.stderr  # still there when asked for


def test_run_once_exits_1_when_the_relay_cannot_be_reached(tmp_path, imap_user,
                                                           smtp_sink, capsys) -> None:
    class Gone:  # nothing listens here
        host, port = "127.0.0.1", free_port()

    bot = make_bot(tmp_path, smtp=Gone, mailboxes=[imap_user])
    w = bot.window()
    assert bot.import_readers([f"0600001;Ala;Kot;ala@patron.test;{valid_reader(w.year)}"]) == 0
    assert bot.import_codes(["KOD-000001"]) == 0
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Ala Kot 0600001")
    imap_user.append(raw, internaldate=w + timedelta(minutes=1))
    capsys.readouterr()
    assert bot.run_once() == 1
    err = capsys.readouterr().err
    assert "1 repl(ies) could not be sent now" in err and "unreachable" in err, err
    # The reply is kept and goes out once the relay is back: then the run exits 0.
    bot.config.write_text(bot.config.read_text(encoding="utf-8").replace(
        f"port = {Gone.port}", f"port = {smtp_sink.port}"), encoding="utf-8")
    assert bot.run_once() == 0
    assert len(smtp_sink.messages) == 1


def test_the_installed_config_is_found_without_config(tmp_path, monkeypatch) -> None:
    from mailbot import cli

    installed = tmp_path / "etc" / "mailbot.toml"
    monkeypatch.setattr(cli, "SYSTEM_CONFIG", str(installed))
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli._default_config() == "mailbot.toml"  # nothing installed: the local name
    installed.parent.mkdir()
    installed.write_text("", encoding="utf-8")
    assert cli._default_config() == str(installed)
    (tmp_path / "mailbot.toml").write_text("", encoding="utf-8")
    assert cli._default_config() == "mailbot.toml"  # a local one comes first
    monkeypatch.setenv("MAILBOT_CONFIG", "/srv/x.toml")
    assert cli._default_config() == "/srv/x.toml"


def test_each_command_asks_only_for_the_secrets_it_uses(tmp_path, imap_user, smtp_sink,
                                                         monkeypatch, capsys) -> None:
    # The mailbox password and the dashboard key come from the environment. status needs
    # neither; check needs the mailbox's, not the dashboard's; so does run --once (it
    # serves no dashboard); the daemon needs both.
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[imap_user])
    text = bot.config.read_text(encoding="utf-8").replace(
        f'password = "{imap_user.password}"', 'password_env = "TEST_IMAP_PASSWORD"')
    bot.config.write_text(text + '\n[web]\nsecret_key_env = "TEST_WEB_KEY"\n',
                          encoding="utf-8")
    monkeypatch.delenv("TEST_IMAP_PASSWORD", raising=False)
    monkeypatch.delenv("TEST_WEB_KEY", raising=False)
    assert bot.cli("db", "upgrade") == 0
    assert bot.cli("status") == 0
    capsys.readouterr()
    assert bot.cli("check") == 2
    assert "TEST_IMAP_PASSWORD is not set" in capsys.readouterr().err
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_user.password)
    assert bot.cli("run", "--once") == 0
    assert bot.cli("run") == 2
    assert "TEST_WEB_KEY is not set" in capsys.readouterr().err


def test_restore_takes_discard_newer(tmp_path, smtp_sink, capsys) -> None:
    # The flag reaches restore_database (its effect: tests/db/test_backup.py).
    bot = make_bot(tmp_path, smtp=smtp_sink, mailboxes=[])
    assert bot.import_codes(["KOD-000001", "KOD-000002"]) == 0
    assert bot.cli("backup", str(tmp_path / "copy.db")) == 0
    assert bot.cli("restore", "--discard-newer", str(tmp_path / "copy.db")) == 0
    assert "restored " in capsys.readouterr().out


def test_the_collector_is_back_on_after_a_command(tmp_path) -> None:
    # mailbot.startup turns the cyclic collector off for the start-up only: after any
    # command (one that opens the database and one that fails before) it is on again.
    import gc

    config = tmp_path / "mailbot.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/m.db"\n', encoding="utf-8")
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert gc.isenabled()
    assert main(["--config", str(tmp_path / "missing.toml"), "status"]) == 2
    assert gc.isenabled()
    assert main(["--config", str(config), "status"]) == 0
    assert gc.isenabled()
