"""An SMTP connection after the login, with commands written in groups (RFC 2920,
PIPELINING) and the relay's responses read back in order.

aiosmtplib (respond/smtp.py connects, greets, starts TLS and logs in with it, OAuth2
included) cannot pipeline: its protocol object keeps one response and throws away any
data that arrives while none is awaited or one is still uncollected (aiosmtplib 5.1's
``SMTPProtocol.data_received``), so the second and third answers of a group are lost.
Once the login is done this protocol takes the connection over
(``asyncio.Transport.set_protocol``, the same TLS transport): it keeps every response
that arrives, in order, and a reply's envelope — MAIL FROM, RCPT TO, DATA — goes out in
one write and costs one round trip instead of three when the relay offers PIPELINING.
Without PIPELINING the same commands go one at a time, each answer awaited (RFC 5321).

Only the commands a reply needs are here: the envelope, the message, RSET-free recovery
(a lane drops the connection after any failure, so no group is ever left half-read) and
QUIT. Nothing about what an answer means: that is respond/smtp.py's, as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple

import aiosmtplib

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; be lenient, not unbounded.
MAX_LINE = 8192
MAX_LINES = 64


class Response(NamedTuple):
    code: int
    message: str


class Disconnected(Exception):
    """The relay closed the connection (or it broke) while answers were awaited."""


class Malformed(Exception):
    """The relay's answer was not an SMTP reply."""


class PipelinedConnection(asyncio.Protocol):
    """The connection of one lane, taken over from aiosmtplib after the login."""

    def __init__(self, *, pipelining: bool, extensions: frozenset[str]) -> None:
        self.pipelining = pipelining
        self.extensions = extensions  # the EHLO keywords, lower case ("size", "smtputf8")
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines of a multi-line answer read so far
        self._code = -1
        self._answers: deque[Response] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP) -> PipelinedConnection:
        """The logged-in aiosmtplib ``client``'s connection, from now on read and written
        by this protocol only (the client must not be used again)."""
        transport = client.transport
        if transport is None or transport.is_closing():
            raise Disconnected("the connection closed before it could be used")
        extensions = frozenset(k.lower() for k in client.esmtp_extensions)
        conn = cls(pipelining="pipelining" in extensions, extensions=extensions)
        conn.transport = transport
        transport.set_protocol(conn)
        return conn

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() \
            and self._error is None

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            self._parse()
        except Malformed as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Disconnected(f"connection lost: {exc}" if exc else "connection closed"))
        self.transport = None

    def eof_received(self) -> bool:
        self._fail(Disconnected("the relay closed the connection"))
        return False

    # commands

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing() or self._error is not None:
            raise Disconnected("connection lost")
        self.transport.write(data)

    async def command_group(self, commands: list[bytes], timeout: float | None, *,
                            expect: tuple[tuple[int, ...], ...]) -> list[Response]:
        """The answers to ``commands`` (each its line without the CRLF), in order: the
        group in one write when the relay pipelines, every answer read; else command by
        command, stopping after the first answer not in its ``expect``. The list is
        shorter than the commands after such a refusal, or when the relay closed the
        connection after answering some of the group; the caller must then not go on
        on this connection."""
        answers: list[Response] = []
        if self.pipelining:
            self.write(b"".join(c + b"\r\n" for c in commands))
            for _ in commands:
                try:
                    answers.append(await self.read(timeout))
                except Disconnected:
                    # A relay may answer one command with 421 and close: that answer
                    # is what counts (the caller sees the shorter list).
                    if not answers:
                        raise
                    break
            return answers
        for command, wanted in zip(commands, expect, strict=True):
            self.write(command + b"\r\n")
            answers.append(await self.read(timeout))
            if answers[-1].code not in wanted:
                break
        return answers

    async def read(self, timeout: float | None) -> Response:
        """The next answer the relay sent (in the order it sent them)."""
        while not self._answers:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except asyncio.TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response") from None
            finally:
                self._waiter = None
        return self._answers.popleft()

    def close(self, *, quit: bool = True) -> None:
        """QUIT (when nothing is half-sent) and close; never waits for the answer."""
        if self.transport is not None and not self.transport.is_closing():
            if quit and self._error is None:
                self.transport.write(b"QUIT\r\n")
            self.transport.close()
        self.transport = None

    # reading

    def _parse(self) -> None:
        while True:
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > MAX_LINE:
                    raise Malformed("an answer line longer than the limit")
                break
            line = bytes(self._buffer[:end + 1])
            del self._buffer[:end + 1]
            if len(line) > MAX_LINE or len(line) < 4 or not line[:3].isdigit() \
                    or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise Malformed(f"not an SMTP answer: {line[:80]!r}")
            code = int(line[:3])
            if self._lines and code != self._code:
                raise Malformed("a multi-line answer changed its code")
            self._code = code
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if len(self._lines) > MAX_LINES:
                raise Malformed("an answer of too many lines")
            if line[3:4] != b"-":
                self._answers.append(Response(code, "\n".join(self._lines)))
                self._lines, self._code = [], -1
                self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
