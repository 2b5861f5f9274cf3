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
import socket
import ssl

from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError

from mailbot.config import MailboxSettings
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
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not accepted (certificate verify failed: "
                f"{exc.verify_message or said}); check the host name and ca_file")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or said})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is the server running, are host and port right?"
    if isinstance(exc, socket.gaierror):
        return f"host name not found ({exc.strerror or said})"
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return f"no answer within {mb.timeout:g} s"
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
