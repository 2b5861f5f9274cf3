"""``Sip2Readers``: the SIP2 reader source -- one connection, login, lookups, failure policy.

One TCP connection (optionally TLS, certificate and host name verified) is kept open between
lookups and reopened transparently when the server has closed it. With a ``username`` the
client logs in (93/94) on every new connection; a lookup is one Patron Information exchange
(63/64), whose response ``patron`` turns into ``ReaderFacts``.

Failure policy: a timeout, a refused or dropped connection, a garbled response or a bad
checksum closes the connection and the request is tried again on a fresh one, ``retries``
times; then :class:`~mailbot.errors.SourceUnavailable`. A refused login or a certificate that
does not verify raise it at once (trying again cannot help). ``SourceUnavailable`` keeps the
patron's request waiting: a source that cannot answer never turns into a refusal.

Nothing secret is logged: frames are logged at DEBUG through ``wire.redact``.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from mailbot.config import Sip2SourceSettings
from mailbot.errors import SourceUnavailable
from mailbot.readers.sip2.patron import facts_from_patron_information
from mailbot.readers.sip2.wire import Message, Sip2ProtocolError, decode, encode, redact
from mailbot.rules.base import ReaderFacts

__all__ = ["Sip2Readers"]

log = logging.getLogger(__name__)

_MAX_FRAME = 65536


class _Fatal(Exception):
    """An error that trying again cannot fix (login refused, certificate not trusted)."""


def _timestamp() -> str:
    return datetime.now().strftime("%Y%m%d    %H%M%S")


class Sip2Readers:
    """Reader facts from the library system's SIP2 server (one connection, reused)."""

    name = "sip2"

    def __init__(
        self, settings: Sip2SourceSettings, *, today: Callable[[], date] = date.today
    ) -> None:
        self.settings = settings
        self._today = today
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._sequence = 0
        self._ssl_context: ssl.SSLContext | None = None

    # The public face ------------------------------------------------------------------

    def lookup(self, session: Any, *, library_id: str, card: str) -> ReaderFacts | None:
        """The reader with this card, ``None`` if there is none; ``SourceUnavailable`` if
        the SIP2 server cannot answer."""
        if not card or any(c in card for c in "|\r\n\0"):
            return None  # no library system holds such a card; never put it on the wire
        s = self.settings
        body = f"63000{_timestamp()}{' ' * 10}AO{s.institution_id}|AA{card}|"
        if s.terminal_password:
            body += f"AC{s.terminal_password}|"
        message = self._request(body, "64")
        try:
            return facts_from_patron_information(message, card=card, today=self._today())
        except Sip2ProtocolError as exc:
            self.close()
            raise SourceUnavailable(f"{self._where()}: {exc}") from exc

    def ping(self) -> bool:
        """SC Status (99): whether the server says it is online; raises if it cannot answer."""
        message = self._request("9900802.00", "98")
        return message.fixed[:1] == "Y"

    def close(self) -> None:
        """Close the connection (the next lookup opens a new one)."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> Sip2Readers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Request with retries --------------------------------------------------------------

    def _where(self) -> str:
        return f"SIP2 server {self.settings.host}:{self.settings.port}"

    def _request(self, body: str, expect: str) -> Message:
        attempts = 1 + max(0, self.settings.retries)
        error: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                self._ensure_connected()
                return self._exchange(body, expect)
            except _Fatal as exc:
                self.close()
                raise SourceUnavailable(f"{self._where()}: {exc}") from None
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise SourceUnavailable(
                    f"{self._where()}: certificate not trusted: {exc.verify_message}"
                ) from None
            except (OSError, Sip2ProtocolError) as exc:
                self.close()
                error = exc
                log.warning("%s: attempt %d/%d failed: %s", self._where(), attempt, attempts,
                            _describe(exc))
        raise SourceUnavailable(
            f"{self._where()} did not answer ({attempts} attempt(s)): {_describe(error)}"
        )

    # Connection ------------------------------------------------------------------------

    def _ensure_connected(self) -> None:
        if self._sock is not None and self._is_stale(self._sock):
            log.info("%s closed the idle connection; reconnecting", self._where())
            self.close()
        if self._sock is None:
            self._connect()

    @staticmethod
    def _is_stale(sock: socket.socket) -> bool:
        """Whether an idle connection was closed by the server (or says something unasked)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.setblocking(False)
            try:
                sock.recv(1)  # b"" at EOF; unasked bytes mean we are out of step anyway
            except (BlockingIOError, ssl.SSLWantReadError):
                return False  # only TLS housekeeping (e.g. TLS 1.3 session tickets)
            return True
        except (OSError, ValueError):
            return True

    def _connect(self) -> None:
        s = self.settings
        sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        try:
            if s.tls:
                sock = self._tls().wrap_socket(sock, server_hostname=s.host)
            self._sock = sock
            self._buffer.clear()
            log.debug("%s: connected%s", self._where(), " (TLS)" if s.tls else "")
            if s.username:
                self._login()
        except BaseException:
            self.close()
            sock.close()
            raise

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Certificates verified and host name checked: the default context does both.
            self._ssl_context = ssl.create_default_context(cafile=self.settings.ca_file)
        return self._ssl_context

    def _login(self) -> None:
        s = self.settings
        body = f"9300CN{s.username}|CO{s.password or ''}|"
        if s.location_code:
            body += f"CP{s.location_code}|"
        reply = self._exchange(body, "94")
        if reply.fixed != "1":
            raise _Fatal(f"login refused for user {s.username!r}")

    # One exchange ------------------------------------------------------------------------

    def _exchange(self, body: str, expect: str) -> Message:
        assert self._sock is not None
        sequence = self._sequence
        self._sequence = (self._sequence + 1) % 10
        frame = encode(body, sequence)
        deadline = time.monotonic() + self.settings.timeout
        self._send(frame, deadline)
        resends = 0
        while True:
            raw = self._read_frame(deadline)
            log.debug("%s <- %s", self._where(), redact(raw))
            message = decode(raw)
            if message.command == "96" and resends < 2:
                resends += 1  # the server asks us to send it again (it saw a bad checksum)
                self._send(frame, deadline)
                continue
            if message.command != expect:
                raise Sip2ProtocolError(f"expected a {expect} response, got {message.command}")
            if message.sequence is not None and message.sequence != sequence:
                raise Sip2ProtocolError(
                    f"response sequence {message.sequence} does not match request {sequence}"
                )
            return message

    def _send(self, frame: bytes, deadline: float) -> None:
        assert self._sock is not None
        log.debug("%s -> %s", self._where(), redact(frame))
        self._sock.settimeout(self._remaining(deadline))
        self._sock.sendall(frame)

    def _read_frame(self, deadline: float) -> bytes:
        assert self._sock is not None
        while True:
            # Some servers end frames with CR LF: the LF is left at the start of the next one.
            while self._buffer[:1] in (b"\n", b"\r"):
                del self._buffer[:1]
            end = self._buffer.find(b"\r")
            if end >= 0:
                frame = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return frame
            if len(self._buffer) > _MAX_FRAME:
                raise Sip2ProtocolError("response too long without a CR terminator")
            self._sock.settimeout(self._remaining(deadline))
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            self._buffer += chunk

    @staticmethod
    def _remaining(deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the SIP2 server")
        return remaining


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no attempt made"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
