"""Why a mailbox could not be read, in words staff can act on.

What this gives is the mailbox row's ``last_error``: ``mailbot status``, the dashboard
and the log show it. A refused login is mailbot.login's ``AuthFailure``, whose text
already names the mailbox, the provider's error and what to do. Anything else is said
plainly: what failed (reaching the server, TLS, the server's answer) and the server's own
words, without Python's ``b'…'`` wrapping (``LoginError: b'[AUTHENTICATIONFAILED] …'``
means nothing at a library's front desk). Never a password: should a server echo the
mailbox's own, it is blanked out.
"""

from __future__ import annotations

import re

from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError

from mailbot.config import MailboxSettings
from mailbot.connection_errors import in_words
from mailbot.login.failures import AuthFailure

_BYTES_REPR = re.compile(r"""\bb(['"])((?:(?!\1)[^\\]|\\.)*)\1""")


def failure_text(exc: BaseException, mb: MailboxSettings) -> str:
    """The text of a failed poll of ``mb`` (at most 1,000 characters)."""
    if isinstance(exc, AuthFailure):
        return _safe(str(exc), mb)
    where = f"{mb.host}:{mb.port}" if mb.type == "imap" else f"Maildir {mb.path}"
    return _safe(f"{where}: {_what(exc, mb)}", mb)


def _what(exc: BaseException, mb: MailboxSettings) -> str:
    said = plain(str(exc)) or type(exc).__name__
    network = in_words(exc, server="server", timeout=mb.timeout)
    if network is not None:
        return network
    if isinstance(exc, (ConnectionError, IMAPClientAbortError, EOFError)):
        return f"connection lost ({said})"
    if isinstance(exc, CapabilityError):
        return f"the server cannot do what the configuration asks: {said}"
    if isinstance(exc, IMAPClientError):
        return f"the server refused: {said}"
    if isinstance(exc, OSError):
        return exc.strerror or said
    return f"{type(exc).__name__}: {said}"


def plain(text: str) -> str:
    """``text`` with Python's bytes reprs (``b'[AUTHENTICATIONFAILED] …'``) unwrapped."""
    return _BYTES_REPR.sub(lambda m: m.group(2), text).strip()


def _safe(text: str, mb: MailboxSettings) -> str:
    if mb.password and len(mb.password) >= 3:
        text = text.replace(mb.password, "***")
    return text[:1000]
