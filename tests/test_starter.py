"""`mailbot init`: a starting config that loads as written, never written over an existing
one, with the next three commands; `check` on it fails plainly (the hosts do not exist)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest

from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.errors import BadInput
from mailbot.starter import write_starter

NOBODY = 65534


def test_the_starting_config_loads_as_written_with_every_path_under_the_state_dir(
        tmp_path, monkeypatch):
    # One library, one mailbox, Europe/Warsaw; the database and the dashboard key under
    # the state directory, absolute; passwords named, not written.
    monkeypatch.chdir(tmp_path)
    config, state = tmp_path / "etc" / "mailbot" / "mailbot.toml", tmp_path / "state"
    lines = write_starter(str(config), str(state))
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "imap-pw")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "relay-pw")
    settings = load_settings(config)
    assert settings.timezone == "Europe/Warsaw"
    assert settings.database_url == f"sqlite:///{state}/mailbot.db"
    assert settings.web.secret_key_file == f"{state}/web-secret.key"
    assert [lib.id for lib in settings.libraries] == ["biblioteka"]
    (mailbox,) = settings.mailboxes
    assert (mailbox.library, mailbox.password_env, mailbox.password) == \
        ("biblioteka", "MAILBOT_IMAP_PASSWORD", "imap-pw")
    assert (settings.smtp.password_env, settings.smtp.password) == \
        ("MAILBOT_SMTP_PASSWORD", "relay-pw")
    assert mailbox.host.endswith(".invalid") and settings.smtp.host.endswith(".invalid")
    text = config.read_text()
    assert "imap-pw" not in text and "password =" not in text
    # Every path in it is absolute, as written (not made so by the loader).
    raw = tomllib.loads(text)
    assert raw["database_url"].startswith("sqlite:////")
    assert os.path.isabs(raw["web"]["secret_key_file"])
    # The keys IT must change are marked.
    marked = [line.split("=")[0].strip() for line in text.splitlines()
              if ">>> CHANGE" in line and not line.startswith("#")]
    assert marked == ["host", "username", "name", "address", "host", "username"]
    assert "# >>> CHANGE: how patrons reach the library" in text  # contact, above its line
    # A command that needs no password loads it with none set.
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD")
    monkeypatch.delenv("MAILBOT_SMTP_PASSWORD")
    assert load_settings(config, secrets=frozenset({"database"})).mailboxes[0].password is None
    # The lines name the file and give the next commands with its path: the imports,
    # check, run --once.
    assert lines[0].startswith(f"wrote {config} (mode 0640")
    assert f"     mailbot --config {config} import-readers czytelnicy.csv --library " \
           "biblioteka" in lines
    assert any(line.startswith(f"     mailbot --config {config} import-codes kody.xlsx "
                               "--library biblioteka --service legimi --month ")
               for line in lines)
    assert f"  3. mailbot --config {config} check --create-folders" in lines
    assert f"  4. mailbot --config {config} run --once" in lines
    assert any(line.startswith(f"  1. edit {config}:") for line in lines)
    assert any("MAILBOT_IMAP_PASSWORD=..." in line for line in lines)


def test_the_config_and_the_state_dir_get_their_modes_whatever_the_umask(tmp_path):
    # The config holds no secret: 0640; the state directory (database, key) 0700.
    config, state = tmp_path / "mailbot.toml", tmp_path / "var" / "lib" / "mailbot"
    old = os.umask(0o077)
    try:
        write_starter(str(config), str(state))
    finally:
        os.umask(old)
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert os.listdir(state) == []  # the database is made by the first run, not here


def test_an_existing_config_is_never_overwritten(tmp_path):
    # Refused, BadInput naming the file; the file as it was.
    config = tmp_path / "mailbot.toml"
    config.write_text("# ours\n")
    with pytest.raises(BadInput, match=rf"{config}: exists: mailbot init never overwrites"):
        write_starter(str(config), str(tmp_path / "state"))
    assert config.read_text() == "# ours\n"
    assert not (tmp_path / "state").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BadInput, match="never overwrites"):
        write_starter(str(tmp_path / "dangling"), str(tmp_path / "state"))
    assert not (tmp_path / "nowhere").exists()


def test_the_state_dir_must_be_a_folder(tmp_path):
    (tmp_path / "state").write_text("")
    with pytest.raises(BadInput, match=r"state: exists and is not a folder \(--dir\)"):
        write_starter(str(tmp_path / "mailbot.toml"), str(tmp_path / "state"))
    assert not (tmp_path / "mailbot.toml").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the suite runs as root)")
def test_root_writing_for_a_service_users_state_dir_shares_the_config_with_its_group():
    # install -d -o mailbot /var/lib/mailbot, then `mailbot init` as root: the config is
    # root's, group the service's, 0640 (the service reads it, cannot change it); the
    # state directory keeps its owner and mode.
    top = Path(tempfile.mkdtemp(prefix="mailbot-init-"))
    try:
        state = top / "state"
        state.mkdir(mode=0o750)
        os.chown(state, NOBODY, NOBODY)
        lines = write_starter(str(top / "etc" / "mailbot.toml"), str(state))
        st = (top / "etc" / "mailbot.toml").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, NOBODY, 0o640)
        assert (state.stat().st_uid, stat.S_IMODE(state.stat().st_mode)) == (NOBODY, 0o750)
        assert "group nogroup: the service reads it, only root changes it" in lines[0]
        assert lines[1] == f"state directory {state} (exists, mode 0750, owner nobody)"
        # The next commands run as the state directory's owner, the secrets read in.
        assert f"  3. sudo -u nobody sh -c 'set -a; . /etc/mailbot/secrets.env; set +a; " \
               f"exec mailbot --config {top}/etc/mailbot.toml check --create-folders'" in lines
        # An import needs no password.
        assert f"     sudo -u nobody mailbot --config {top}/etc/mailbot.toml import-readers " \
               "czytelnicy.csv --library biblioteka" in lines
    finally:
        shutil.rmtree(top)


def test_check_on_the_unedited_config_fails_plainly(tmp_path, monkeypatch, capsys):
    # The placeholder hosts never resolve (.invalid): `mailbot check` names each failure
    # on its line and exits 1, no traceback; without the passwords it says which is missing.
    config = tmp_path / "mailbot.toml"
    write_starter(str(config), str(tmp_path / "state"))
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "x")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "y")
    assert main(["--config", str(config), "check"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert any(line.startswith("FAIL  mailbox ebooki@biblioteka.invalid") and
               "imap.biblioteka.invalid" in line for line in lines), out
    assert any(line.startswith("FAIL  relay ") and "smtp.biblioteka.invalid" in line
               for line in lines), out
    # The state folder init made is there and writable: the first import creates the
    # database, so its line passes; the readers are not imported yet.
    assert any(line.startswith("OK    database ") and "not created yet" in line
               for line in lines), out
    assert any(line.startswith("FAIL  library biblioteka reader source local") and
               "no readers imported" in line for line in lines), out
    assert not (tmp_path / "state" / "mailbot.db").exists()  # check creates none
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD")
    assert main(["--config", str(config), "check"]) == 2
    assert "environment variable MAILBOT_IMAP_PASSWORD is not set" in capsys.readouterr().err
