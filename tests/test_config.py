"""Config: typed, validated at start-up, every mistake named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.config import load_settings, settings_from_dict
from mailbot.errors import ConfigError
from mailbot.respond.pacing import Limits

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
        OAuthSettings,
        Settings,
        Sip2SourceSettings,
        SmtpSettings,
        SqlSourceSettings,
    )

    text = (ROOT / "config.example.toml").read_text()
    for cls in (Settings, SmtpSettings, LibrarySettings, MailboxSettings, SqlSourceSettings,
                Sip2SourceSettings, DaemonSettings, WebSettings, ImportSettings, OAuthSettings):
        for f in dataclasses.fields(cls):
            if f.name in ("source", "smtp", "libraries", "mailboxes", "sql", "sip2", "daemon",
                          "web", "imports", "oauth"):
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


def test_a_wrong_type_inside_a_mailbox_is_named_with_its_path():
    # A string where a mailbox's port belongs names mailboxes[0].port and the value.
    data = {**MINIMAL, "mailboxes": [{**MINIMAL["mailboxes"][0], "port": "993"}]}
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.port'?: must be an integer, not '993'"):
        settings_from_dict(data)


def test_unknown_keys_are_named_at_every_level_with_the_known_ones():
    # A typo at the top, in a section and in a library's sub-table names its full path.
    cases = (({**MINIMAL, "timezon": "UTC"}, r"'timezon'", "timezone"),
             ({**MINIMAL, "smtp": {"hots": "relay"}}, r"smtp\.hots", "host"),
             ({**MINIMAL, "libraries": [{"id": "a", "name": "A", "sql": {"uri": "x"}}]},
              r"libraries\[0\]\.sql\.uri", "url_env"),
             ({**MINIMAL, "source": "x"}, r"'source'", "timezone"))
    for data, key, known in cases:
        with pytest.raises(ConfigError, match=key) as err:
            settings_from_dict(data)
        assert "unknown key (known keys:" in str(err.value) and known in str(err.value)


def test_a_missing_required_key_is_named():
    # A library without a name, a mailbox without an address: "is required", with the path.
    for data, key in (({**MINIMAL, "libraries": [{"id": "a"}]}, r"libraries\[0\]\.name"),
                      ({**MINIMAL, "mailboxes": [{"library": "a", "username": "u"}]},
                       r"mailboxes\[0\]\.address")):
        with pytest.raises(ConfigError, match=key + r"'?: is required"):
            settings_from_dict(data)


def test_wrong_shapes_and_choices_are_named():
    # A choice outside its list, a string for a list, a table for an array of tables, a value
    # for a table: each names the key and what was expected.
    lib = {"id": "a", "name": "A"}
    cases = (({**MINIMAL, "mailboxes": [{**MINIMAL["mailboxes"][0], "type": "pop3"}]},
              r"mailboxes\[0\]\.type'?: must be one of 'imap', 'maildir', not 'pop3'"),
             ({**MINIMAL, "libraries": [{**lib, "languages": "pl"}]},
              r"libraries\[0\]\.languages'?: must be a list, not str"),
             ({**MINIMAL, "libraries": [{**lib, "languages": ["pl", 1]}]},
              r"libraries\[0\]\.languages\[1\]'?: must be a string, not 1"),
             ({**MINIMAL, "libraries": lib}, r"libraries'?: must be an array of tables"),
             ({**MINIMAL, "web": "on"}, r"'web'?: must be a table, not str"),
             ({**MINIMAL, "web": {"enabled": 1}}, r"web\.enabled'?: must be true or false, not 1"),
             ({**MINIMAL, "daemon": {"poll_interval": "60"}},
              r"daemon\.poll_interval'?: must be a number, not '60'"))
    for data, message in cases:
        with pytest.raises(ConfigError, match=message):
            settings_from_dict(data)


def test_value_rules_name_the_key_and_the_rule():
    # Each key's own rule refuses with its own words, at the key's path.
    lib = {"id": "a", "name": "A"}
    cases = (({"libraries": [{**lib, "penalty_months": -1}]},
              r"libraries\[0\]\.penalty_months'?: must not be negative"),
             ({"libraries": [{**lib, "languages": ["pl", "de"]}]},
              r"libraries\[0\]\.languages'?: unsupported language 'de'"),
             ({"libraries": [{**lib, "max_balance_due": "1,5"}]},
              r"libraries\[0\]\.max_balance_due'?: not an amount: '1,5'"),
             # A Decimal, but a balance compared with it raises on every decision.
             ({"libraries": [{**lib, "max_balance_due": "NaN"}]},
              r"libraries\[0\]\.max_balance_due'?: not an amount: 'NaN'"),
             ({"libraries": [{**lib, "max_balance_due": "Infinity"}]},
              r"libraries\[0\]\.max_balance_due'?: not an amount: 'Infinity'"),
             ({"libraries": [{**lib, "send_window": "16:00-10:00"}]},
              r"libraries\[0\]\.send_window'?: the window must end after it starts"),
             ({"smtp": {"connections": 9}}, r"smtp\.connections'?: must be between 1 and 8"),
             ({"web": {"port": 70000}}, r"web\.port'?: must be a TCP port"),
             ({"web": {"session_hours": 0}}, r"web\.session_hours'?: must be positive"),
             ({"imports": {"max_rows": 0}}, r"imports\.max_rows'?: must be at least 1"),
             ({"daemon": {"retention_time": "3:3"}},
              r"daemon\.retention_time'?: must be HH:MM, not '3:3'"))
    for changes, message in cases:
        with pytest.raises(ConfigError, match=message):
            settings_from_dict({**MINIMAL, **changes})


# A consortium's file has dozens of [[libraries]] and [[mailboxes]] tables: nobody counts
# them to find libraries[17], so a mistake in one names it as its IT knows it too.
CONSORTIUM = {
    "libraries": [{"id": "wbp", "name": "WBP"}, {"id": "wbp-poznan", "name": "Filia Poznań"}],
    "mailboxes": [{"library": "wbp", "address": "ebooki@wbp.example.org", "username": "w",
                   "password": "p"},
                  {"library": "wbp-poznan", "address": "ebooki@poznan.example.org",
                   "username": "p", "password": "p", "folder": "Ebooki"}],
}


def _consortium(table: str, index: int, changes: dict) -> dict:
    tables = [dict(t) for t in CONSORTIUM[table]]
    tables[index].update(changes)
    return {**CONSORTIUM, table: tables}


def test_a_mistake_in_a_library_names_the_library_by_its_id(monkeypatch):
    # A key's own rule, a rule between keys, a secret missing from the environment, an
    # unknown key: each names libraries[1] by its path and, after what is wrong, its id.
    monkeypatch.delenv("T_POZNAN_SQL", raising=False)
    cases = (({"penalty_months": -1}, r"libraries\[1\]\.penalty_months'?: must not be negative"),
             ({"reader_source": "sip2", "check_loans_this_year": True},
              r"libraries\[1\]\.check_loans_this_year'?: cannot be answered by a sip2"),
             ({"reader_source": "sql", "sql": {"url_env": "T_POZNAN_SQL"}},
              r"libraries\[1\]\.sql\.url_env'?: environment variable T_POZNAN_SQL is not set"),
             ({"windw_day": 3}, r"libraries\[1\]\.windw_day'?: unknown key"))
    for changes, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            settings_from_dict(_consortium("libraries", 1, changes))
        assert str(err.value).endswith(' (in [[libraries]] id = "wbp-poznan")'), err.value
        assert err.value.column.startswith("libraries[1].")  # the key's path, unchanged
    # A duplicate or missing id is the key that would name the table: not named twice.
    for data, message in ((_consortium("libraries", 1, {"id": "wbp"}),
                           r"libraries\[1\]\.id'?: duplicate library id 'wbp'$"),
                          ({**CONSORTIUM, "libraries": [{"name": "WBP"}]},
                           r"libraries\[0\]\.id'?: is required$")):
        with pytest.raises(ConfigError, match=message):
            settings_from_dict(data)


def test_a_mistake_in_a_mailbox_names_it_by_its_address_and_folder():
    # The address, and the folder when it is not INBOX (one address may be read in
    # several folders); a reference to another mailbox's relay names that one too.
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.port'?: must be an integer, "
                                          r"not '993' \(in \[\[mailboxes\]\] address = "
                                          r"\"ebooki@poznan\.example\.org\", folder = "
                                          r"\"Ebooki\"\)$"):
        settings_from_dict(_consortium("mailboxes", 1, {"port": "993"}))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.library'?: no library with id "
                                          r"'wbp-gniezno' \(in \[\[mailboxes\]\] address = "
                                          r"\"ebooki@wbp\.example\.org\"\)$"):
        settings_from_dict(_consortium("mailboxes", 0, {"library": "wbp-gniezno"}))
    # A mistyped address names no address (nor, without it, the folder).
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.address'?: must be a string, "
                                          r"not 7$"):
        settings_from_dict(_consortium("mailboxes", 1, {"address": 7}))
    relay = {"host": "smtp.example.org", "username": "konsorcjum", "password": "p"}
    data = _consortium("mailboxes", 0, {"smtp": relay})
    data["mailboxes"][1]["smtp"] = {**relay, "max_per_day": 500}
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.smtp'?: the same account as "
                                          r"mailboxes\[0\]\.smtp \(address = "
                                          r"\"ebooki@wbp\.example\.org\"\) with other limits.* "
                                          r"\(in \[\[mailboxes\]\] address = "
                                          r"\"ebooki@poznan\.example\.org\", folder = "):
        settings_from_dict(data)


def test_the_command_line_names_the_library_and_exits_with_2(tmp_path: Path, capsys):
    # The whole line an IT reads, from a real file: file, key path, what is wrong, the id.
    config = tmp_path / "mailbot.toml"
    config.write_text('[[libraries]]\nid = "wbp"\nname = "WBP"\n\n'
                      '[[libraries]]\nid = "wbp-poznan"\nname = "Filia"\npenalty_months = -1\n',
                      encoding="utf-8")
    from mailbot.cli import main

    assert main(["--config", str(config), "status"]) == 2
    assert capsys.readouterr().err == (
        f"mailbot: error: {config}, column 'libraries[1].penalty_months': must not be "
        'negative (in [[libraries]] id = "wbp-poznan")\n')


def test_loaded_settings_are_frozen_hashable_picklable_and_equal_when_loaded_again(
        monkeypatch: pytest.MonkeyPatch):
    # Worker processes get the settings pickled; caches key on them: both must keep working.
    import dataclasses
    import pickle

    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "x")
    settings = load_settings(ROOT / "config.example.toml")
    again = load_settings(ROOT / "config.example.toml")
    assert settings == again and hash(settings) == hash(again)
    assert hash(settings.libraries[0]) == hash(again.libraries[0])
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and copy.own_addresses == settings.own_addresses
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timezone = "UTC"  # type: ignore[misc]
    assert settings.libraries[0].languages == ("pl", "en")  # TOML arrays become tuples
    assert settings.mailboxes[0].key == "imap://ebooki@biblioteka.example.org@imap.example.org:993/INBOX"


def test_settings_made_in_code_are_not_checked():
    # Only a config file is checked: tests and dataclasses.replace build settings freely.
    import dataclasses

    from mailbot.config import LibrarySettings

    lib = LibrarySettings(id="a", name="A")
    assert dataclasses.replace(lib, window_day=31).window_day == 31


# -- hosted mailboxes (issue 17): OAuth2, a relay per mailbox, sending limits -------------

M365 = {"tenant": "biblioteka.onmicrosoft.com", "client_id": "00000000-0000-0000-0000-000000000001",
        "client_secret_env": "M365_SECRET"}


def _hosted(mailbox: dict, **top) -> dict:
    return {"libraries": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
            "mailboxes": [{"library": "a", "address": "ebooki@a.example.org", "username": "u",
                           "password": "p", **mailbox}], **top}


def test_a_mailbox_with_oauth_needs_its_provider_keys(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("M365_SECRET", "s3cr3t")
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.oauth': is required"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft"}))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.oauth\.client_id"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft",
                                    "oauth": {"tenant": "t", "client_secret_env": "M365_SECRET"}}))
    with pytest.raises(ConfigError, match="exactly one of client_secret_env"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft",
                                    "oauth": {**M365, "certificate_file": __file__,
                                              "certificate_thumbprint": "AB"}}))
    with pytest.raises(ConfigError, match=r"oauth\.service_account_file': is required"):
        settings_from_dict(_hosted({"auth": "oauth2-google", "oauth": {}}))
    with pytest.raises(ConfigError, match=r"service_account_file': cannot read /nonexistent"):
        settings_from_dict(_hosted({"auth": "oauth2-google",
                                    "oauth": {"service_account_file": "/nonexistent/sa.json"}}))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.oauth': is set, but auth = \"password\""):
        settings_from_dict(_hosted({"oauth": M365}))
    settings = settings_from_dict(_hosted({"auth": "oauth2-microsoft", "oauth": M365}))
    assert settings.mailboxes[0].oauth.client_secret == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


def test_a_missing_secret_variable_is_named_and_a_secret_is_never_echoed(monkeypatch):
    monkeypatch.delenv("M365_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"oauth\.client_secret_env': environment variable "
                                          r"M365_SECRET is not set"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft", "oauth": M365}))
    with pytest.raises(ConfigError) as err:
        settings_from_dict(_hosted({"auth": "oauth2-microsoft",
                                    "oauth": {**M365, "client_secret": 12345}}))
    assert "12345" not in str(err.value)


def test_a_mailbox_relay_inherits_the_mailbox_oauth_and_replies_route_by_mailbox(monkeypatch):
    monkeypatch.setenv("M365_SECRET", "s3cr3t")
    relay = {"host": "smtp.office365.com", "port": 587, "starttls": True, "username": "u",
             "auth": "oauth2-microsoft", "max_per_minute": 30, "max_per_day": 10000}
    data = _hosted({"auth": "oauth2-microsoft", "oauth": M365, "smtp": relay},
                   smtp={"host": "relay.consortium.example", "port": 25})
    data["mailboxes"].append({"library": "b", "address": "ebooki@b.example.org",
                              "username": "b", "password": "p"})
    settings = settings_from_dict(data)
    own = settings.relay_for("a", "Ebooki@A.example.org")
    assert own.key == "smtp://u@smtp.office365.com:587" and own.oauth.client_secret == "s3cr3t"
    assert Limits.of(own).limited and (own.max_per_minute, own.max_per_hour) == (30, None)
    assert settings.relay_for("b", "ebooki@b.example.org") is settings.smtp
    assert settings.relay_for("a", "gone@a.example.org") is settings.smtp
    assert list(settings.relays) == ["smtp://@relay.consortium.example:25",
                                     "smtp://u@smtp.office365.com:587"]


def test_a_relay_with_oauth_needs_it_and_a_username():
    relay = {"host": "smtp.gmail.com", "port": 465, "ssl": True, "auth": "oauth2-google"}
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.smtp\.oauth': is required for "
                                          r"auth = 'oauth2-google' \(or in the mailbox's own"):
        settings_from_dict(_hosted({"smtp": relay}))
    with pytest.raises(ConfigError, match=r"'smtp\.oauth': is required"):
        settings_from_dict(_hosted({}, smtp={"auth": "oauth2-microsoft", "username": "x"}))
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.smtp\.starttls': ssl and starttls"):
        settings_from_dict(_hosted({"smtp": {"ssl": True, "starttls": True}}))


def test_one_account_has_one_set_of_limits_and_one_address_one_account():
    shared = {"host": "smtp.home.pl", "port": 587, "starttls": True, "username": "konsorcjum"}
    data = _hosted({"smtp": {**shared, "max_per_hour": 100}})
    data["mailboxes"].append({"library": "b", "address": "ebooki@b.example.org", "username": "b",
                              "password": "p", "smtp": {**shared, "max_per_hour": 200}})
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.smtp': the same account as "
                                          r"mailboxes\[0\]\.smtp \(address = "
                                          r"\"ebooki@a\.example\.org\"\) with other limits"):
        settings_from_dict(data)
    data["mailboxes"][1]["smtp"]["max_per_hour"] = 100
    assert list(settings_from_dict(data).relays) == ["smtp://konsorcjum@smtp.home.pl:587"]
    twin = _hosted({"smtp": shared})
    twin["mailboxes"].append({"library": "a", "address": "EBOOKI@a.example.org", "username": "u",
                              "password": "p", "folder": "Other"})
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.smtp': has the address of "
                                          r"mailboxes\[0\] but another relay"):
        settings_from_dict(twin)


def test_limits_and_the_grace_are_checked():
    with pytest.raises(ConfigError, match=r"smtp\.max_per_minute': must be at least 1"):
        settings_from_dict(_hosted({}, smtp={"max_per_minute": 0}))
    with pytest.raises(ConfigError, match=r"daemon\.mailbox_grace': must not be negative"):
        settings_from_dict(_hosted({}, daemon={"mailbox_grace": -1.0}))
    assert settings_from_dict(_hosted({}, daemon={"mailbox_grace": 0.0})).daemon.mailbox_grace == 0


def test_the_global_relay_is_in_use_only_for_mailboxes_without_their_own():
    own = {"host": "smtp.home.pl", "port": 587, "starttls": True, "username": "a"}
    settings = settings_from_dict(_hosted({"smtp": own}))
    assert list(settings.relays) == ["smtp://a@smtp.home.pl:587"]
    assert list(settings_from_dict(_hosted({})).relays) == ["smtp://@localhost:25"]


def test_one_account_configured_two_ways_is_refused():
    # The second mailbox's relay is the same account with a mistyped password: mailbot
    # keeps one health and one sent count per account and `check` logs in once, so the
    # typo would go unseen until its replies fail.
    shared = {"host": "smtp.home.pl", "port": 587, "starttls": True, "username": "konsorcjum",
              "password": "dobre"}
    data = _hosted({"smtp": shared})
    data["mailboxes"].append({"library": "b", "address": "ebooki@b.example.org", "username": "b",
                              "password": "p", "smtp": {**shared, "password": "dorbe"}})
    with pytest.raises(ConfigError, match=r"mailboxes\[1\]\.smtp': the same account "
                                          r"\(smtp://konsorcjum@smtp\.home\.pl:587\) as "
                                          r"mailboxes\[0\]\.smtp \(address = "
                                          r"\"ebooki@a\.example\.org\"\), configured otherwise "
                                          r"\(password\)") as err:
        settings_from_dict(data)
    assert "dorbe" not in str(err.value)
    # The global relay counts too.
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.smtp': the same account .* as "
                                          r"smtp, configured otherwise \(starttls, password\)"):
        settings_from_dict(_hosted({"smtp": shared},
                                   smtp={"host": "smtp.home.pl", "port": 587,
                                         "username": "konsorcjum"}))


def test_oauth_values_that_cannot_work_are_named_at_load(tmp_path):
    cert = tmp_path / "app.pem"
    cert.write_text("-----BEGIN PRIVATE KEY-----\n")
    ms = {"tenant": "t", "client_id": "c", "certificate_file": str(cert)}
    with pytest.raises(ConfigError, match=r"certificate_thumbprint': must be the "
                                          r"certificate's SHA-1 thumbprint, 40 hexadecimal"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft",
                                    "oauth": {**ms, "certificate_thumbprint": "AB CD"}}))
    ok = {**ms, "certificate_thumbprint": "ab:" * 19 + "ab"}
    assert settings_from_dict(_hosted({"auth": "oauth2-microsoft", "oauth": ok}))
    with pytest.raises(ConfigError, match=r"oauth\.authority': must be an https:// address"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft",
                                    "oauth": {**ok, "authority": "login.microsoftonline.com"}}))
    with pytest.raises(ConfigError, match=r"oauth\.timeout': must be positive"):
        settings_from_dict(_hosted({"auth": "oauth2-microsoft", "oauth": {**ok, "timeout": 0.0}}))
    with pytest.raises(ConfigError, match=r"service_account_file': cannot read .* \(not a "
                                          r"readable file\)"):
        settings_from_dict(_hosted({"auth": "oauth2-google",
                                    "oauth": {"service_account_file": str(tmp_path)}}))


def test_a_maildir_has_no_login_and_the_auth_pauses_are_ordered(tmp_path):
    maildir = {"library": "a", "address": "m@a.example.org", "type": "maildir",
               "path": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]\.auth': a maildir mailbox is read "
                                          r"from disk"):
        settings_from_dict({**MINIMAL, "mailboxes": [{**maildir, "auth": "oauth2-google"}]})
    with pytest.raises(ConfigError, match=r"daemon\.auth_retry_max': must not be below "
                                          r"daemon\.auth_retry"):
        settings_from_dict({**MINIMAL, "daemon": {"auth_retry": 600.0, "auth_retry_max": 60.0}})


def test_a_relay_inheriting_the_mailbox_oauth_is_the_same_account_as_one_saying_it(monkeypatch):
    # [smtp] with its own [smtp.oauth] and a mailbox's [mailboxes.smtp] for the same account
    # that takes the mailbox's [mailboxes.oauth]: one account, configured alike.
    monkeypatch.setenv("M365_SECRET", "s3cr3t")
    relay = {"host": "smtp.office365.com", "port": 587, "starttls": True, "username": "u",
             "auth": "oauth2-microsoft"}
    data = _hosted({"auth": "oauth2-microsoft", "oauth": M365, "smtp": relay},
                   smtp={**relay, "oauth": M365})
    assert list(settings_from_dict(data).relays) == ["smtp://u@smtp.office365.com:587"]
    data["mailboxes"][0]["oauth"] = {**M365, "client_id": "another-app"}
    with pytest.raises(ConfigError, match=r"configured otherwise \(oauth\)"):
        settings_from_dict(data)


# -- secrets only where a command uses them (issue 18) -------------------------------------

EVERY_SECRET = {
    "web": {"secret_key_env": "T_WEB_KEY"},
    "libraries": [{"id": "a", "name": "A", "reader_source": "sql",
                   "sql": {"url_env": "T_KOHA_URL"}},
                  {"id": "b", "name": "B", "reader_source": "sip2",
                   "sip2": {"password_env": "T_SIP2_PW"}}],
    "smtp": {"username": "relay", "password_env": "T_RELAY_PW"},
    "mailboxes": [{"library": "a", "address": "e@a.example.org", "username": "u",
                   "password_env": "T_IMAP_PW"},
                  {"library": "b", "address": "e@b.example.org", "username": "u2",
                   "auth": "oauth2-microsoft", "oauth": M365}],
}
SECRET_VARIABLES = ("T_WEB_KEY", "T_KOHA_URL", "T_SIP2_PW", "T_RELAY_PW", "T_IMAP_PW",
                    "M365_SECRET", "MAILBOT_SMTP_PASSWORD", "MAILBOT_DATABASE_URL")


def test_a_command_reads_only_the_secrets_it_uses(monkeypatch: pytest.MonkeyPatch):
    # `status` ({"database"}) loads with no password variable set, and holds none.
    from mailbot.config import SECRET_KINDS

    assert SECRET_KINDS == {"database", "mail", "readers", "web"}
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    s = settings_from_dict(EVERY_SECRET, secrets=frozenset({"database"}))
    assert s.mailboxes[0].password is None and s.smtp.password is None
    assert s.mailboxes[1].oauth.client_secret is None and s.libraries[0].sql.url is None
    assert s.libraries[1].sip2.password is None
    # Each kind asked for wants its own variables, and only those.
    for kinds, missing in (({"mail"}, "T_RELAY_PW|T_IMAP_PW|M365_SECRET"),
                           ({"readers"}, "T_KOHA_URL|T_SIP2_PW"), ({"web"}, "T_WEB_KEY"),
                           (None, "T_")):
        with pytest.raises(ConfigError, match=f"environment variable ({missing})"):
            settings_from_dict(EVERY_SECRET, secrets=None if kinds is None else frozenset(kinds))


def test_each_kind_of_secret_is_read_when_asked_for(monkeypatch: pytest.MonkeyPatch):
    # check ({"database", "mail", "readers"}) gets the mail and reader secrets, not the
    # dashboard's; MAILBOT_DATABASE_URL and MAILBOT_SMTP_PASSWORD only with their kinds.
    values = {"T_WEB_KEY": "w" * 32, "T_KOHA_URL": "mysql+pymysql://ro:pw@koha/koha",
              "T_SIP2_PW": "sip", "T_RELAY_PW": "relay", "T_IMAP_PW": "imap",
              "M365_SECRET": "m365", "MAILBOT_DATABASE_URL": "postgresql://bot@db/mailbot"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MAILBOT_SMTP_PASSWORD", raising=False)
    s = settings_from_dict(EVERY_SECRET, secrets=frozenset({"database", "mail", "readers"}))
    assert (s.mailboxes[0].password, s.smtp.password, s.mailboxes[1].oauth.client_secret) == \
        ("imap", "relay", "m365")
    assert (s.libraries[0].sql.url, s.libraries[1].sip2.password) == (values["T_KOHA_URL"], "sip")
    assert s.database_url == "postgresql://bot@db/mailbot"
    monkeypatch.setenv("MAILBOT_SMTP_PASSWORD", "wins")
    assert settings_from_dict(EVERY_SECRET, secrets=frozenset({"mail"})).smtp.password == "wins"
    only_db = settings_from_dict(EVERY_SECRET, secrets=frozenset({"database"}))
    assert only_db.smtp.password is None
    assert settings_from_dict(EVERY_SECRET, secrets=frozenset({"mail"})).database_url == \
        "sqlite:///mailbot.db"  # the file's (the default): the variable is not read
    with pytest.raises(ValueError, match="passwords"):
        settings_from_dict(MINIMAL, secrets=frozenset({"passwords"}))


def test_secret_files_are_checked_only_by_a_command_that_logs_in(tmp_path):
    # An OAuth2 key file root keeps from staff (or not there yet) does not stop `status`;
    # a command that logs in is told at load, naming the key.
    google = _hosted({"auth": "oauth2-google",
                      "oauth": {"service_account_file": str(tmp_path / "sa.json")}})
    assert settings_from_dict(google, secrets=frozenset({"database"}))
    with pytest.raises(ConfigError, match=r"service_account_file': cannot read"):
        settings_from_dict(google, secrets=frozenset({"database", "mail"}))


def test_a_sql_source_without_any_url_is_refused_whatever_the_command():
    # Not a secret left unread but a mistake in the file: named even for `status`.
    data = {**MINIMAL, "libraries": [{"id": "a", "name": "A", "reader_source": "sql"}]}
    with pytest.raises(ConfigError, match=r"libraries\[0\]\.sql\.url'?: is required"):
        settings_from_dict(data, secrets=frozenset({"database"}))


def test_load_settings_passes_the_kinds_on(tmp_path, monkeypatch: pytest.MonkeyPatch):
    # The file's way in takes the same argument.
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="MAILBOT_IMAP_PASSWORD"):
        load_settings(ROOT / "config.example.toml")
    s = load_settings(ROOT / "config.example.toml", secrets=frozenset({"database"}))
    assert s.mailboxes[0].password is None
    assert s.database_url == "sqlite:////var/lib/mailbot/mailbot.db"


def test_a_relative_database_left_in_the_working_directory_is_not_silently_replaced(
        tmp_path, monkeypatch):
    # mailbot 0.1 counted `sqlite:///mailbot.db` from the working directory (the unit's
    # /var/lib/mailbot). Read from there with the config in /etc/mailbot, 0.2 would open a
    # new, empty database beside the config: it refuses, naming both and the fix.
    import sqlite3

    state, etc = tmp_path / "state", tmp_path / "etc"
    state.mkdir()
    etc.mkdir()
    sqlite3.connect(state / "mailbot.db").close()
    config = etc / "mailbot.toml"
    config.write_text('database_url = "sqlite:///mailbot.db"\n', encoding="utf-8")
    monkeypatch.chdir(state)
    with pytest.raises(ConfigError, match=rf"there is one at {state}/mailbot.db.*"
                                          rf"sqlite:///{state}/mailbot.db") as err:
        load_settings(config)
    assert err.value.column == "database_url"
    # Once the config's folder has its own database (or the path is absolute), no fuss.
    config.write_text(f'database_url = "sqlite:///{state}/mailbot.db"\n', encoding="utf-8")
    assert load_settings(config).database_url == f"sqlite:///{state}/mailbot.db"
    monkeypatch.chdir(etc)
    config.write_text('database_url = "sqlite:///mailbot.db"\n', encoding="utf-8")
    assert load_settings(config).database_url == f"sqlite:///{etc}/mailbot.db"
