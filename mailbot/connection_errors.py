"""Why a connection to a mail server failed, in words staff can act on: the part that
IMAP (intake/failures.py) and SMTP (respond/answers.py) share — TLS, refused connections,
unknown host names, silence. Each caller adds what its own protocol's errors mean."""

from __future__ import annotations

import socket
import ssl


def in_words(exc: BaseException, *, server: str, timeout: float) -> str | None:
    """``exc`` said plainly when it is a network or TLS failure; None otherwise.
    ``server`` names the other side ("server", "relay")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not accepted (certificate verify failed: "
                f"{exc.verify_message or exc}); check the host name and ca_file")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: is the {server} running, are host and port right?"
    if isinstance(exc, socket.gaierror):
        return f"host name not found ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):  # socket.timeout and asyncio.TimeoutError too
        return f"no answer within {timeout:g} s"
    return None
