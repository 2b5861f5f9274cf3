"""Config: typed, validated at start-up, every mistake named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.config import load_settings, settings_from_dict
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "libraries": [{"id": "a", "name": "Biblioteka A"}],
    "mailboxes": [{"library": "a", "address": "ebooki@a.example.org", "username": "u",
                   "password": "secret"}],
}


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch):
    # config.example.toml is valid as shipped (its password comes from the environment).
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "x")
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.libraries[0].window_day == 1
    assert settings.mailboxes[0].password == "x"


def test_the_example_documents_every_key():
    # Every settings field appears in config.example.toml.
    import dataclasses

    from mailbot.config import (
        DaemonSettings,
        ImportSettings,
        WebSettings,
        LibrarySettings,
        MailboxSettings,
        Settings,
        Sip2SourceSettings,
        SmtpSettings,
        SqlSourceSettings,
    )

    text = (ROOT / "config.example.toml").read_text()
    for cls in (Settings, SmtpSettings, LibrarySettings, MailboxSettings, SqlSourceSettings,
                Sip2SourceSettings, DaemonSettings, WebSettings, ImportSettings):
        for f in dataclasses.fields(cls):
            if f.name in ("source", "smtp", "libraries", "mailboxes", "sql", "sip2", "daemon",
                          "web", "imports"):
                continue
            assert f"{f.name} =" in text or f"# {f.name} =" in text, f"{cls.__name__}.{f.name}"


def test_an_unknown_key_is_named():
    # A typo in a library key is refused with the key's full name.
    data = {**MINIMAL, "libraries": [{"id": "a", "name": "A", "windw_day": 3}]}
    with pytest.raises(ConfigError, match=r"libraries\[0\]\.windw_day"):
        settings_from_dict(data)


def test_a_wrong_type_is_named():
    # A string where a number belongs names the key and the value.
    data = {**MINIMAL, "smtp": {"port": "25"}}
    with pytest.raises(ConfigError, match=r"smtp\.port.*integer"):
        settings_from_dict(data)


def test_a_mailbox_of_an_unknown_library_is_refused():
    # Mailboxes must point at a configured library.
    data = {**MINIMAL, "mailboxes": [{"library": "zz", "address": "x@y.pl", "username": "u"}]}
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.library"):
        settings_from_dict(data)


def test_bad_timezone_window_and_pattern_are_refused():
    # Values are checked, not only types.
    for lib, key in (({"timezone": "Mars/Olympus"}, "timezone"),
                     ({"window_day": 31}, "window_day"),
                     ({"window_time": "25:00"}, "window_time"),
                     ({"card_pattern": "([0-9"}, "card_pattern")):
        data = {**MINIMAL, "libraries": [{"id": "a", "name": "A", **lib}]}
        with pytest.raises(ConfigError, match=key):
            settings_from_dict(data)


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    # password_env reads the variable; a missing variable is an error naming it.
    data = {**MINIMAL, "mailboxes": [{"library": "a", "address": "e@a.pl", "username": "u",
                                      "password_env": "BRANCH_PW"}]}
    with pytest.raises(ConfigError, match="BRANCH_PW"):
        settings_from_dict(data)
    monkeypatch.setenv("BRANCH_PW", "s3cret")
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "relay-pw")
    settings = settings_from_dict(data)
    assert settings.mailboxes[0].password == "s3cret"
    assert settings.smtp.password == "relay-pw"
    assert "s3cret" not in repr(settings) and "relay-pw" not in repr(settings)


def test_invalid_toml_names_the_file(tmp_path: Path):
    # A syntax error is a ConfigError naming the file.
    p = tmp_path / "bad.toml"
    p.write_text("timezone = \n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings(p)


def test_a_mistyped_secret_is_not_echoed():
    # A password given as a number is refused without printing it; reprs hide the DB URL.
    data = {**MINIMAL, "mailboxes": [{"library": "a", "address": "e@a.pl", "username": "u",
                                      "password": 98765432}]}
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data)
    assert "98765432" not in str(err.value) and "password" in str(err.value)
    s = settings_from_dict({**MINIMAL, "database_url": "postgresql://bot:pw123@db/mailbot"})
    assert "pw123" not in repr(s)
