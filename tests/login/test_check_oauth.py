"""`mailbot check` on a hosted mailbox: it logs in to the mailbox and its relay with OAuth2
tokens as the bot does, and names an expired secret on both lines with Entra's code and
what to do."""

from __future__ import annotations

from mailbot.cli import main
from tests.botenv import valid_reader
from tests.login.test_xoauth2 import (  # noqa: F401 - mailbox is a fixture
    APP,
    MAILBOX,
    TENANT,
    mailbox,
    microsoft_setup,
    oauth_bot,
)


def _check(bot, capsys) -> tuple[int, list[str]]:  # noqa: ANN001
    capsys.readouterr()
    code = main(["--config", str(bot.config), "check", "--create-folders"])
    return code, capsys.readouterr().out.splitlines()


def test_check_logs_in_with_tokens_and_names_an_expired_secret(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox, capsys):  # noqa: F811
    microsoft_setup(idp)
    bot = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay, "oauth2-microsoft")
    assert bot.cli("db", "upgrade") == 0
    assert bot.import_readers([f"0070001;Ala;Token;p1@patron.test;"
                               f"{valid_reader(bot.window().year)}"]) == 0
    code, lines = _check(bot, capsys)
    [mailbox_line] = [line for line in lines if line.startswith(("OK", "FAIL"))
                      and f"mailbox {MAILBOX}" in line]
    [relay_line] = [line for line in lines if " relay smtp://" in line]
    assert mailbox_line.startswith("OK") and relay_line.startswith("OK"), lines
    assert "(oauth2-microsoft" in relay_line
    assert idp.count("microsoft") == 1  # one token for the mailbox and its relay

    idp.expire_secret(TENANT, APP)
    from mailbot.login import tokens

    tokens.clear()  # a new `mailbot check` process has no token cached
    code, lines = _check(bot, capsys)
    assert code == 1
    for item in (f"mailbox {MAILBOX}", " relay smtp://"):
        [line] = [x for x in lines if item in x]
        assert line.startswith("FAIL") and "AADSTS7000222" in line, line
        assert "Certificates & secrets" in line, line
    assert "client-secret-1" not in "\n".join(lines)
