"""The SMTP edge of the respond stage: one reply's bytes handed to the relay (or written
to a folder of .eml files for the demo), and what went wrong as a ``TransportError``.

No database here: a transport takes an ``Outgoing`` reply (outbox.Pending is one) and
either returns, once the relay has taken it, or raises ``TransportError(permanent=...,
unreachable=...)``; the outbox decides what that means for the row. A lane sends in two
steps, ``prepare`` (the envelope, up to DATA's 354) and ``finish`` (the message and the
final dot), so that the delivery loop (deliver.py) can overlap envelopes while it hands
over one reply at a time.

aiosmtplib connects, greets, starts TLS and logs in (OAuth2 included); after that the
connection is read and written by respond/pipelining.py, which sends a reply's envelope
(MAIL FROM, RCPT TO, DATA) as one group when the relay offers PIPELINING (RFC 2920): one
round trip instead of three. aiosmtplib cannot pipeline (its protocol drops answers it
was not waiting for), and its ``sendmail``/``data()`` parse each address with
``email.utils`` (~20 µs an address) and run two regular expressions over the whole
message (~0.2 ms for a 9 KB reply), under the hand-over lock (docs/performance.md);
``on_the_wire`` does the same with bytes methods (tests/respond/test_wire.py compares
the two).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib import SMTPStatus

from mailbot.addresses import smtp_form
from mailbot.config import SmtpSettings
from mailbot.respond.answers import throttling, unreachable_because
from mailbot.login.failures import AuthFailure
from mailbot.login.smtp import smtp_login
from mailbot.respond.pipelining import Disconnected, Malformed, PipelinedConnection, Response

log = logging.getLogger(__name__)


class TransportError(Exception):
    """One reply could not be handed over: ``permanent`` (fail it for staff) or not (try
    again later); ``unreachable`` when no reply of this round could be; ``throttled`` when
    the relay asks us to slow down (its pause is the relay's, the reply is not at fault)."""

    def __init__(self, message: str, *, permanent: bool, unreachable: bool = False,
                 auth: bool = False, throttled: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The server could not be reached at all: the rest of the round would fail too.
        self.unreachable = unreachable
        # The relay (or the identity provider) refused our credentials (login.AuthFailure).
        self.auth = auth
        # A throttling answer (throttling()): the relay is paused, no reply fails.
        self.throttled = throttled


def _throttled(code: int, message: str) -> TransportError:
    return TransportError(f"relay asks us to slow down: {code} {message}", permanent=False,
                          unreachable=True, throttled=True)


# Plausibly passing by themselves: a retry may succeed.
_TEMPORARY = (OSError, asyncio.TimeoutError, MemoryError)


def unexpected(exc: Exception) -> TransportError:
    """An error nobody foresaw while preparing or sending one reply: that reply fails
    (for staff, with the error named; deferred when it may pass by itself), never the
    round with the other replies in it."""
    log.error("unexpected error while sending one reply", exc_info=exc)
    return TransportError(f"unexpected error while sending: {type(exc).__name__}: {exc}"[:1000],
                          permanent=not isinstance(exc, _TEMPORARY))


class Outgoing(Protocol):
    """What a transport needs of one reply (the outbox's Pending rows have it)."""

    @property
    def id(self) -> int: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def mail_from(self) -> str: ...
    @property
    def to_address(self) -> str: ...
    @property
    def message(self) -> bytes: ...


class FileTransport:
    """Writes each reply as ``<outbox id>.eml``; used by the demo and for dry runs."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.lanes = [self]

    async def __aenter__(self) -> FileTransport:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def prepare(self, row: Outgoing) -> None:
        return None

    async def finish(self, row: Outgoing) -> None:
        from mailbot.private_files import write_private

        write_private(self.folder / f"{row.id:06d}-{row.outcome}.eml", row.message)


class SmtpLane:
    """One reused connection to the relay; reconnects when the server drops it.

    A reply goes out in two steps: ``prepare`` (MAIL FROM, RCPT TO, DATA up to the relay's
    354) and ``finish`` (the message and the final dot, which is when the relay takes it).
    Only ``finish`` can make a reply delivered, so the sender serialises ``finish`` and its
    commit across lanes while the other lanes prepare."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.conn: PipelinedConnection | None = None
        self.in_data = False  # DATA was accepted (354): the relay now reads a message

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.connected

    async def close(self) -> None:
        if self.in_data:
            # Mid-DATA, QUIT would be read as message text: drop the connection, and the
            # relay discards the unfinished message.
            self._drop()
        if self.conn is not None:
            self.conn.close(quit=True)
            self.conn = None

    async def _open(self) -> PipelinedConnection:
        """A connection logged in (``_connect``), taken over for sending."""
        client = await self._connect()
        try:
            return PipelinedConnection.take_over(client)
        except BaseException:
            client.close()
            raise

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, use_tls=s.ssl, start_tls=s.starttls,
            timeout=s.timeout,
            # Certificates and host names are verified; ca_file only changes whom we trust.
            tls_context=ssl.create_default_context(cafile=s.ca_file) if s.ssl or s.starttls
            else None,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            # Greet now, as aiosmtplib's mail() would: the first envelope then knows the
            # relay's extensions (SIZE) like every later one.
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        try:
            await smtp_login(client, s)
        except BaseException:
            client.close()  # not left open for the garbage collector
            raise
        return client

    async def prepare(self, row: Outgoing) -> None:
        if self.in_data:
            self._drop()  # a reply prepared but never handed over (the round stopped)
        if not self.connected:
            self._drop()
            try:
                self.conn = await self._open()
            except AuthFailure as exc:
                self._drop()
                raise TransportError(str(exc), permanent=False, unreachable=True,
                                     auth=True) from None
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError,
                    Disconnected) as exc:
                self._drop()
                if (isinstance(exc, aiosmtplib.SMTPResponseException)
                        and throttling(exc.code, exc.message, stage="connect")):
                    raise _throttled(exc.code, exc.message) from None  # e.g. a 421 greeting
                raise TransportError(f"cannot reach {self.settings.host}:{self.settings.port}: "
                                     f"{unreachable_because(exc, self.settings)}",
                                     permanent=False, unreachable=True) from None
        try:
            try:
                await self._envelope(row)
            except (aiosmtplib.SMTPServerDisconnected, Disconnected):
                # The relay closed our idle connection: one fresh try, then it counts.
                self._drop()
                self.conn = await self._open()
                await self._envelope(row)
        except aiosmtplib.SMTPRecipientRefused as exc:
            self._drop()  # nothing half-done is left on the relay's side
            if throttling(exc.code, exc.message, stage="RCPT"):
                raise _throttled(exc.code, exc.message) from None
            raise TransportError(f"recipient refused: {exc.code} {exc.message}",
                                 permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPAuthenticationError) as exc:
            # The relay refuses us, not this reply: no reply is at fault, none may be
            # failed for it. Stop the round; staff see the error on the pending rows.
            self._drop()
            if throttling(exc.code, exc.message, stage="MAIL"):
                raise _throttled(exc.code, exc.message) from None
            raise TransportError(f"relay refused us: {exc.code} {exc.message}",
                                 permanent=False, unreachable=True) from None
        except Exception as exc:
            raise self._failed(exc) from None

    async def _envelope(self, row: Outgoing) -> None:
        conn = self.conn
        assert conn is not None
        options = []
        if conn.supports("size"):
            # RFC 1870: octets as transmitted, each line ending a CRLF.
            size = len(row.message) + row.message.count(b"\n") - row.message.count(b"\r\n")
            options.append(f"size={size}")
        # What aiosmtplib's mail() and rcpt() send and check, without their address
        # parsing (email.utils, ~20 µs an address, twice per reply, and for a non-ASCII
        # address it re-parses what intake already checked and can garble it). The paths
        # are the stored addresses themselves, checked once more by mailbot.addresses.
        sender, recipient = smtp_path(row.mail_from), smtp_path(row.to_address)
        utf8 = False
        if sender is None or recipient is None:
            sender, recipient, utf8 = _paths(row)
            if utf8:
                if not conn.supports("smtputf8"):
                    raise TransportError(
                        "the relay does not offer SMTPUTF8 for a non-ASCII address "
                        "(RFC 6531); staff may answer from a mailbox that can", permanent=True)
                options.append("SMTPUTF8")
        # One group (one round trip) where the relay pipelines; without PIPELINING the
        # commands go one by one and stop at the first refusal. After any refusal the
        # connection is dropped (prepare), so no answer of a group is left unread.
        answers = await conn.command_group(
            [b" ".join((b"MAIL FROM:" + sender, *(o.encode("ascii") for o in options))),
             b"RCPT TO:" + recipient, b"DATA"], self.settings.timeout,
            expect=((SMTPStatus.completed,), (SMTPStatus.completed, SMTPStatus.will_forward),
                    (SMTPStatus.start_input,)))
        response = _answer(answers, 0)
        if response.code != SMTPStatus.completed:
            if utf8:
                # Refused for this reply's SMTPUTF8 envelope, not for who we are: the
                # other replies go on.
                self._drop()
                raise TransportError(f"MAIL FROM with SMTPUTF8 refused: {response.code} "
                                     f"{response.message}", permanent=response.code >= 500)
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, row.mail_from)
        response = _answer(answers, 1)
        if response.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message,
                                                  row.to_address)
        response = _answer(answers, 2)
        if response.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        self.in_data = True

    async def finish(self, row: Outgoing) -> None:
        assert self.conn is not None and self.in_data
        try:
            # aiosmtplib's data() would send DATA here and wait for 354 (prepare did that,
            # outside the hand-over lock) and run two regular expressions over the whole
            # message (~0.2 ms for a 9 KB reply): on_the_wire does the same with bytes
            # methods.
            conn = self.conn
            conn.write(on_the_wire(row.message))
            self.in_data = False
            response = await conn.read(self.settings.timeout)
            if response.code != SMTPStatus.completed:
                if throttling(response.code, response.message, stage="DATA"):
                    self._drop()
                    raise _throttled(response.code, response.message)
                raise aiosmtplib.SMTPDataError(response.code, response.message)
        except Exception as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> TransportError:
        """``exc`` from one reply's envelope or hand-over as that reply's failure. Only a
        refusal of the envelope itself (see _envelope) keeps the connection: after
        anything else the relay's state is unknown, and the next reply starts afresh."""
        if isinstance(exc, TransportError):
            return exc
        self._drop()
        if isinstance(exc, AuthFailure):  # at the reconnect after an idle connection dropped
            return TransportError(str(exc), permanent=False, unreachable=True, auth=True)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            # The DATA command itself (before 354), or a dropped envelope: as at the end.
            if throttling(exc.code, exc.message, stage="DATA"):
                return _throttled(exc.code, exc.message)
            return TransportError(f"{exc.code} {exc.message}", permanent=exc.code >= 500)
        if isinstance(exc, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError,
                            Disconnected, Malformed)):
            return TransportError(f"{type(exc).__name__}: {exc}", permanent=False)
        return unexpected(exc)

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close(quit=False)
        self.conn = None
        self.in_data = False


def _answer(answers: list[Response], index: int) -> Response:
    """The envelope's ``index``-th answer; missing: the relay closed the connection after
    accepting the commands before it."""
    if index >= len(answers):
        raise Disconnected("the relay closed the connection in the middle of an envelope")
    return answers[index]


_LINE_END = re.compile(rb"\r\n|\n|\r")
# A plain ASCII address (dot-atom local part, a domain name): quote_address would give it
# back unchanged between angle brackets; anything else goes through aiosmtplib's parsing.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                            r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def smtp_path(address: str) -> bytes | None:
    """``<address>`` for MAIL FROM / RCPT TO when it is a plain ASCII address, else None."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return None


def _paths(row: Outgoing) -> tuple[bytes, bytes, bool]:
    """MAIL FROM and RCPT TO paths of a reply whose addresses are not plain ASCII, and
    whether they need SMTPUTF8: a Unicode domain after an ASCII local part goes as
    A-labels (``xn--…``), plain ASCII. An address no relay can take (an outbox row written
    before intake checked addresses this way, a reader file's e-mail) fails this reply:
    the patron's for good, our own mailbox's address for a while (staff can correct the
    configuration meanwhile)."""
    sender = smtp_form(row.mail_from)
    if sender is None:
        raise TransportError(f"our sender address {row.mail_from!r} is not usable in an "
                             "SMTP envelope", permanent=False)
    recipient = smtp_form(row.to_address)
    if recipient is None:
        raise TransportError(f"not a usable recipient address: {row.to_address!r}",
                             permanent=True)
    return (b"<" + sender[0] + b">", b"<" + recipient[0] + b">", sender[1] or recipient[1])


def on_the_wire(message: bytes) -> bytes:
    """``message`` as DATA carries it: CRLF line ends, dot-stuffed (RFC 5321 4.5.2), and
    the final dot. Composed replies use bare LF, so a plain replace does it."""
    if b"\r" in message:
        message = _LINE_END.sub(b"\r\n", message)
    else:
        message = message.replace(b"\n", b"\r\n")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpTransport:
    """``smtp.connections`` lanes (connections) to the relay, opened as needed."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.lanes = [SmtpLane(settings) for _ in range(max(1, settings.connections))]

    async def __aenter__(self) -> SmtpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for lane in self.lanes:
            await lane.close()


Transport = FileTransport | SmtpTransport


def transport_for(settings: SmtpSettings) -> Transport:
    return FileTransport(settings.file_outbox) if settings.file_outbox else SmtpTransport(settings)
