"""IMAP login: LOGIN with the mailbox's password (``auth = "password"``)."""

from __future__ import annotations

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailbot.config import MailboxSettings
from mailbot.login.failures import AuthFailure


def imap_login(client: IMAPClient, mb: MailboxSettings) -> None:
    """Logs ``client`` in as the mailbox; ``AuthFailure`` when the server refuses."""
    try:
        client.login(mb.username or "", mb.password or "")
    except LoginError as exc:
        raise AuthFailure(mb.key, _text(exc), advice="check the mailbox's username and "
                          "password (password_env)") from None


def _text(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:300]
