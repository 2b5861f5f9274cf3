"""XOAUTH2 end to end: mailbot's own intake and SMTP code log in to a real Dovecot (oauth2
passdb, tokens checked by introspection at the tests' identity provider) and a real
aiosmtpd relay (XOAUTH2 only) with tokens msal and google-auth fetched over TLS."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from mailbot.intake import imap
from mailbot.login.failures import AuthFailure
from mailbot.respond.smtp import SmtpLane, TransportError
from tests.botenv import Bot, request_mail, valid_reader
from tests.identity import IdentityProvider, XOAuth2Sink
from tests.servers import Dovecot, ImapUser

MAILBOX = "ebooki@biblioteka.test"
TENANT, APP = "biblioteka", "mailbot-app"
SA_EMAIL = "mailbot@biblioteka-test.iam.gserviceaccount.com"


def oauth_bot(tmp_path: Path, idp: IdentityProvider, dovecot: Dovecot, relay: XOAuth2Sink,
              auth: str) -> Bot:
    """One library whose mailbox and relays (its own and the global one) log in with
    ``auth``: the mailbox's [mailboxes.oauth] serves its IMAP and its [mailboxes.smtp]."""
    if auth == "oauth2-microsoft":
        secret_file = tmp_path / "m365-secret"
        secret_file.write_text("client-secret-1\n", encoding="utf-8")
        oauth = (f'tenant = "{TENANT}"\nclient_id = "{APP}"\n'
                 f'client_secret_file = "{secret_file}"\nauthority = "{idp.url}"\n')
    else:
        oauth = f'service_account_file = "{tmp_path / "service-account.json"}"\n'
    oauth += f'ca_file = "{idp.ca_file}"\ntimeout = 5.0\n'
    relay_toml = (f'host = "{relay.host}"\nport = {relay.port}\nusername = "{MAILBOX}"\n'
                  f'auth = "{auth}"\n')
    config = tmp_path / "mailbot.toml"
    config.write_text(f"""
timezone = "Europe/Warsaw"
database_url = "sqlite:///{tmp_path}/mailbot.db"

[smtp]
{relay_toml}
[smtp.oauth]
{oauth}
[[libraries]]
id = "lib"
name = "Biblioteka Testowa"

[[mailboxes]]
library = "lib"
address = "{MAILBOX}"
type = "imap"
host = "{dovecot.host}"
port = {dovecot.port}
ssl = false
username = "{MAILBOX}"
auth = "{auth}"

[mailboxes.oauth]
{oauth}
[mailboxes.smtp]
{relay_toml}
""", encoding="utf-8")
    return Bot(root=tmp_path, config=config)


def microsoft_setup(idp: IdentityProvider, *, mailbox: str | None = MAILBOX) -> None:
    idp.add_app(TENANT, APP, secret="client-secret-1", mailbox=mailbox)


def google_setup(idp: IdentityProvider, tmp_path: Path) -> str:
    idp.add_service_account(SA_EMAIL)
    idp.users.add(MAILBOX)
    return idp.write_key(SA_EMAIL, tmp_path / "service-account.json")


@pytest.fixture
def mailbox(oauth_dovecot: Dovecot) -> ImapUser:
    """The library's mailbox; its password only lets the test put mail in."""
    if not oauth_dovecot.running:
        oauth_dovecot.start()
    if MAILBOX not in oauth_dovecot.users:
        oauth_dovecot.add_user(MAILBOX, "test-only-password")
    user = ImapUser(MAILBOX, "test-only-password", oauth_dovecot)
    with user.connect() as client:  # each test starts with an empty INBOX
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        if uids:
            client.delete_messages(uids)
            client.expunge()
    return user


def xoauth2_logins(dovecot: Dovecot) -> int:
    return sum(1 for line in dovecot.login_lines(MAILBOX)
               if "Login:" in line and "method=XOAUTH2" in line)


def ask_for_a_code(bot: Bot, mailbox: ImapUser, n: int) -> None:
    w = bot.window()
    assert bot.import_readers([f"00700{n:02d};Ala;Token{n};p{n}@patron.test;"
                               f"{valid_reader(w.year)}"]) == 0
    assert bot.import_codes([f"OAUTH-{n:04d}"]) == 0
    raw, _ = request_mail(f"p{n}@patron.test", "LEGIMI", f"Ala Token{n} 00700{n:02d}")
    mailbox.append(raw, internaldate=w + timedelta(seconds=n))


@pytest.mark.parametrize("auth, provider", [("oauth2-microsoft", "microsoft"),
                                            ("oauth2-google", "google")])
def test_a_mailbox_is_read_and_answered_with_xoauth2_and_one_cached_token(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox, auth, provider):
    # run --once reads the mailbox over IMAP XOAUTH2 and sends the reply over SMTP
    # XOAUTH2; the second run (same process) fetches no token: the first one is cached.
    if auth == "oauth2-microsoft":
        microsoft_setup(idp)
    else:
        google_setup(idp, tmp_path)
    bot = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay, auth)
    before = xoauth2_logins(oauth_dovecot)
    ask_for_a_code(bot, mailbox, 1)
    assert bot.run_once() == 0
    [reply] = oauth_relay.wait_for(1)
    assert reply.auth_login == MAILBOX and reply.rcpt_tos == ("p1@patron.test",)
    assert "OAUTH-0001" in reply.message.get_body(("plain",)).get_content()
    assert xoauth2_logins(oauth_dovecot) > before
    assert oauth_relay.logins and all(r.success for r in oauth_relay.logins)
    fetched = idp.count(provider)
    assert fetched == 1  # one token for the mailbox's IMAP and its relay

    ask_for_a_code(bot, mailbox, 2)
    assert bot.run_once() == 0
    assert len(oauth_relay.wait_for(2)) == 2
    assert idp.count(provider) == fetched


@dataclass
class Reply:
    id: int = 1
    outcome: str | None = "issued"
    mail_from: str = MAILBOX
    to_address: str = "p1@patron.test"
    message: bytes = b"From: ebooki@biblioteka.test\r\nSubject: test\r\n\r\nbody\r\n"


async def _send_one(relay_settings) -> None:  # noqa: ANN001
    lane = SmtpLane(relay_settings)
    try:
        await lane.prepare(Reply())
        await lane.finish(Reply())
    finally:
        await lane.close()


def test_an_expired_secret_is_an_auth_failure_naming_the_mailbox_code_and_advice(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # Entra refuses the expired secret: intake's connect and the SMTP lane both report
    # which mailbox or relay, AADSTS7000222 and what to do in the Entra admin center.
    microsoft_setup(idp)
    idp.expire_secret(TENANT, APP)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay,
                         "oauth2-microsoft").settings()
    mb = settings.mailboxes[0]
    with pytest.raises(AuthFailure) as caught:
        imap.connect(mb)
    failure = caught.value
    assert failure.who == mb.key
    assert (failure.provider, failure.code) == ("Microsoft Entra ID", "AADSTS7000222")
    assert "Certificates & secrets" in failure.advice
    assert "client-secret-1" not in str(failure)

    with pytest.raises(TransportError) as sent:
        asyncio.run(_send_one(settings.relay_of(mb)))
    assert sent.value.auth and sent.value.unreachable and not sent.value.permanent
    assert settings.relay_of(mb).key in str(sent.value)
    assert "AADSTS7000222" in str(sent.value) and "Certificates & secrets" in str(sent.value)
    assert oauth_relay.messages == [] and oauth_relay.logins == []


def test_a_cached_token_the_server_refuses_is_replaced_once(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # The tokens were revoked early (e.g. an admin revoked the app's sessions): the cached
    # one is refused, dropped, and one newly fetched token logs in.
    microsoft_setup(idp)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay,
                         "oauth2-microsoft").settings()
    mb = settings.mailboxes[0]
    imap.connect(mb).logout()
    asyncio.run(_send_one(settings.relay_of(mb)))
    assert idp.count("microsoft") == 1
    idp.revoke_tokens()
    imap.connect(mb).logout()
    assert idp.count("microsoft") == 2
    idp.revoke_tokens()
    asyncio.run(_send_one(settings.relay_of(mb)))
    assert idp.count("microsoft") == 3
    assert [r.success for r in oauth_relay.logins] == [True, False, True]
    assert len(oauth_relay.messages) == 2


def test_a_fresh_token_without_the_mailbox_permission_is_refused_with_exchange_advice(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # Entra issues the token, but the app was never given the mailbox (no
    # Add-MailboxPermission): the servers refuse it, and a fresh token is not asked again.
    microsoft_setup(idp, mailbox=None)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay,
                         "oauth2-microsoft").settings()
    mb = settings.mailboxes[0]
    with pytest.raises(AuthFailure) as caught:
        imap.connect(mb)
    assert "Add-MailboxPermission" in caught.value.advice
    assert "New-ServicePrincipal" in caught.value.advice
    assert idp.count("microsoft") == 1
    with pytest.raises(TransportError) as sent:
        asyncio.run(_send_one(settings.relay_of(mb)))
    assert sent.value.auth and "Add-MailboxPermission" in str(sent.value)
    # The relay got the cached token first, then one newly fetched: two, never more.
    assert idp.count("microsoft") == 2
    assert [r.success for r in oauth_relay.logins] == [False, False]


def test_a_google_key_deleted_is_named_with_delegation_advice_on_the_relay(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # The service account's key was deleted in the Cloud console: invalid_grant, "Keys".
    kid = google_setup(idp, tmp_path)
    idp.delete_key(SA_EMAIL, kid)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay, "oauth2-google").settings()
    mb = settings.mailboxes[0]
    with pytest.raises(AuthFailure) as caught:
        imap.connect(mb)
    assert (caught.value.provider, caught.value.code) == ("Google", "invalid_grant")
    assert "Keys" in caught.value.advice


def test_an_unreachable_identity_provider_is_a_temporary_error_not_an_auth_failure(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # Nobody refused anything: intake sees an OSError (retried as a network error), the
    # SMTP lane an unreachable relay without the auth flag.
    microsoft_setup(idp)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay,
                         "oauth2-microsoft").settings()
    mb = settings.mailboxes[0]
    idp.stop()
    try:
        with pytest.raises(OSError) as caught:
            imap.connect(mb)
        assert not isinstance(caught.value, AuthFailure)
        assert mb.key in str(caught.value)
        with pytest.raises(TransportError) as sent:
            asyncio.run(_send_one(settings.relay_of(mb)))
        assert sent.value.unreachable and not sent.value.auth and not sent.value.permanent
    finally:
        idp.start()


def test_a_server_that_cannot_check_a_token_now_is_a_temporary_error(
        tmp_path, idp, oauth_dovecot, oauth_relay, mailbox):
    # mailbot still holds a good token, but Dovecot cannot reach the introspection
    # endpoint: it answers [UNAVAILABLE] (RFC 5530), which is no refusal of the token.
    microsoft_setup(idp)
    settings = oauth_bot(tmp_path, idp, oauth_dovecot, oauth_relay,
                         "oauth2-microsoft").settings()
    mb = settings.mailboxes[0]
    imap.connect(mb).logout()
    idp.stop()
    try:
        with pytest.raises(OSError) as caught:
            imap.connect(mb)
        assert not isinstance(caught.value, AuthFailure)
        assert "UNAVAILABLE" in str(caught.value)
    finally:
        idp.start()
    imap.connect(mb).logout()
    assert idp.count("microsoft") == 1


def test_a_server_without_xoauth2_is_named_before_any_token_is_fetched(
        tmp_path, idp, dovecot, oauth_relay):
    # A password-only IMAP server (a wrong host or port in the config): said plainly.
    microsoft_setup(idp)
    settings = oauth_bot(tmp_path, idp, dovecot, oauth_relay, "oauth2-microsoft").settings()
    with pytest.raises(AuthFailure) as caught:
        imap.connect(settings.mailboxes[0])
    assert "XOAUTH2" in caught.value.message and "outlook.office365.com" in caught.value.advice
    assert idp.count() == 0


def test_a_temporary_answer_to_auth_is_a_network_error_not_a_refused_login(tmp_path):
    # RFC 4954: 454 4.7.0 "temporary authentication failure" — the relay cannot check
    # credentials now. No AuthFailure (which would pause the relay for minutes and tell IT
    # to change a password that is right): the round stops as for an unreachable relay.
    from aiosmtpd.smtp import AuthResult

    from mailbot.config import SmtpSettings
    from tests.servers import SmtpSink

    class Busy(SmtpSink):
        def _authenticate(self, *args):  # noqa: ANN002
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")

    with Busy(auth=("ebooki", "dobre-haslo")) as relay:
        settings = SmtpSettings(host=relay.host, port=relay.port, username="ebooki",
                                password="dobre-haslo", timeout=5.0)
        with pytest.raises(TransportError) as sent:
            asyncio.run(_send_one(settings))
    assert sent.value.unreachable and not sent.value.auth and not sent.value.permanent
    assert "cannot check logins now: 454" in str(sent.value)
