"""IMAP login: LOGIN with the mailbox's password (``auth = "password"``), or AUTHENTICATE
XOAUTH2 with an OAuth2 access token (``"oauth2-microsoft"``, ``"oauth2-google"``)."""

from __future__ import annotations

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailbot.config import MailboxSettings
from mailbot.login import tokens
from mailbot.login.advice import server_refused
from mailbot.login.failures import AuthFailure


def imap_login(client: IMAPClient, mb: MailboxSettings) -> None:
    """Logs ``client`` in as the mailbox; ``AuthFailure`` when the server or the identity
    provider refuses, ``IdentityUnreachable`` (an OSError) when the provider is away."""
    if mb.auth != "password":
        _token_login(client, mb)
        return
    try:
        client.login(mb.username or "", mb.password or "")
    except LoginError as exc:
        _unless_temporary(mb, exc)
        raise AuthFailure(mb.key, _text(exc), advice="check the mailbox's username and "
                          "password (password_env)") from None


def _token_login(client: IMAPClient, mb: MailboxSettings) -> None:
    assert mb.oauth is not None  # mailbot.config.load requires it with auth = oauth2-…
    user = mb.username or ""
    if not client.has_capability("AUTH=XOAUTH2"):
        raise AuthFailure(mb.key, "the IMAP server does not offer AUTHENTICATE XOAUTH2",
                          advice="check host and port (Microsoft 365: outlook.office365.com "
                          "993 with ssl; Google: imap.gmail.com 993 with ssl)")
    token = tokens.access_token(mb.key, mb.auth, mb.oauth, user)
    try:
        client.oauth2_login(user, token.value)
        return
    except LoginError as exc:
        _unless_temporary(mb, exc)
        refused = exc
    if not token.fresh:
        # The cached token may have been revoked early: one newly fetched token decides.
        tokens.forget(mb.auth, mb.oauth, user)
        token = tokens.access_token(mb.key, mb.auth, mb.oauth, user)
        try:
            client.oauth2_login(user, token.value)
            return
        except LoginError as exc:
            refused = exc
    _unless_temporary(mb, refused)
    raise AuthFailure(mb.key, f"the IMAP server refused a fresh {tokens.PROVIDERS[mb.auth]} "
                      f"token: {_text(refused)}", advice=server_refused(mb.auth))


def _unless_temporary(mb: MailboxSettings, exc: LoginError) -> None:
    """A login the server could not check now ([UNAVAILABLE], RFC 5530: its own backend,
    e.g. Dovecot's token introspection, is away) is a temporary error, not a refusal."""
    if "[UNAVAILABLE]" in str(exc):
        raise ConnectionError(f"{mb.key}: the IMAP server cannot check logins now: "
                              f"{_text(exc)}") from None


def _text(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:300]
