"""The `sip2` reader source: ask the library system over SIP2 (3M Standard Interchange Protocol).

One TCP connection (optionally TLS, certificate and host name verified) is kept open between
lookups and reopened transparently when the server has closed it. With a ``username`` the
client logs in (93/94) on every new connection; a lookup is one Patron Information exchange
(63/64). Every request carries a sequence number and a checksum (``AY``/``AZ``); a response
that carries them is verified.

Failure policy: a timeout, a refused or dropped connection, a garbled response or a bad
checksum closes the connection and the request is tried again on a fresh one, ``retries``
times; then :class:`~mailbot.errors.SourceUnavailable`. A refused login or a certificate that
does not verify raise it at once (trying again cannot help). ``SourceUnavailable`` keeps the
patron's request waiting: a source that cannot answer never turns into a refusal.

How a 64 response becomes :class:`~mailbot.rules.base.ReaderFacts`:

=====================  ======================================================================
SIP2                   ReaderFacts
=====================  ======================================================================
``BL`` valid patron    ``N`` -> ``None`` (no such card). Absent: the card exists if ``AE`` is
                       not empty.
``AE`` personal name   "Surname, First" -> split at the comma; "First Middle Surname" -> the
                       last word is the surname. One word: the surname.
``BV`` fee amount      ``balance_due``; "12.50", "12,50", "1 234,50 zł"; a credit counts as 0.
                       Unreadable -> the response is garbled.
overdue items count    ``overdue_items`` (fixed field; blank -> the number of ``AT`` items).
``BE`` e-mail          ``email`` (the first address if several).
``PX`` / ``PA`` /     ``valid_until``: the patron's expiry date, first of these that is a date
``PE``                 (``PA``: SIPServer's extension, used by Evergreen and Koha; ``PX``:
                       Polaris's, whose ``PA`` means something else). YYYYMMDD, YYYYMMDD
                       HHMMSS, YYYY-MM-DD, DD.MM.YYYY or MM/DD/YYYY; anything else is ignored.
``PB`` / ``BC``        ``birth_date`` (Envisionware/SIPServer ``PB``, Polaris ``BC``).
patron status          see below.
=====================  ======================================================================

``data_updated_on`` and ``last_loan_on`` are not in SIP2: they are always ``None``.
``CQ`` (valid patron password) and the limits ``BZ``/``CA``/``CB`` are ignored.

Blocked accounts. SIP2 tells "charge privileges denied" (status position 0) and "card
reported lost" (position 4), not why. A lost card, a Polaris ``PY`` (expired) = ``Y``, or
charge privileges denied while neither a fee nor an overdue item explains it mean the account
is not valid for service: ``valid_until`` is then set in the past, so the patron is refused as
``inactive_account``. It is the expiry date the server sent if that is already past, else the
last day of the month before yesterday's month: every request decided now for this month's
pool arrived after that day, however long it waited for the source (yesterday, not today,
leaves room for a server clock a day ahead of the library's time zone). When a fee or an
overdue item explains the block, the ``debt``/``overdue`` rules give the patron the better
reason.

Nothing secret is logged: frames are logged at DEBUG with the login password (``CO``),
terminal and patron passwords (``AC``/``AD``) and the patron's personal data masked.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from mailbot.config import Sip2SourceSettings
from mailbot.errors import SourceUnavailable
from mailbot.rules.base import ReaderFacts

log = logging.getLogger(__name__)

# Width of the fixed-length fields after the two-character command id, per response.
_FIXED_WIDTH = {
    "94": 1,  # ok
    "64": 14 + 3 + 18 + 6 * 4,  # status, language, date, six summary counts
    "98": 6 + 3 + 3 + 18 + 4,  # six flags, timeout, retries, date, protocol version
    "96": 0,
}
_TRAILER = re.compile(rb"(?:AY(?P<seq>[0-9]))?AZ(?P<sum>[0-9A-Fa-f]{4})$")
_SECRET_FIELDS = frozenset({"CO", "AC", "AD"})
_PERSONAL_FIELDS = frozenset({"AE", "BD", "BE", "BF", "PB", "BC"})
_MAX_FRAME = 65536

# Patron status positions (SIP2 2.00, Patron Status Response).
CHARGE_PRIVILEGES_DENIED = 0
CARD_REPORTED_LOST = 4


class Sip2ProtocolError(Exception):
    """The server's answer is not a SIP2 answer we can trust (garbled, wrong checksum...)."""


class _Fatal(Exception):
    """An error that trying again cannot fix (login refused, certificate not trusted)."""


# -- codec -------------------------------------------------------------------------------


def checksum(data: bytes) -> str:
    """The SIP2 checksum of every byte up to and including ``AZ``: 4 uppercase hex digits."""
    return f"{(-sum(data)) & 0xFFFF:04X}"


def encode(body: str, sequence: int | None) -> bytes:
    """One frame: the message, ``AY<seq>AZ<checksum>`` when a sequence is given, then CR."""
    data = body.encode("utf-8")
    if sequence is None:
        return data + b"\r"
    data += b"AY%dAZ" % (sequence % 10)
    return data + checksum(data).encode("ascii") + b"\r"


@dataclass(frozen=True)
class Message:
    """A decoded SIP2 frame: command id, fixed part, identified fields (in order)."""

    command: str
    fixed: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    sequence: int | None = None

    def get(self, field_id: str) -> str | None:
        values = self.fields.get(field_id)
        return values[0] if values else None


def _text(data: bytes) -> str:
    # SIP2 says nothing reliable about the charset: UTF-8 where the server sends it (Koha,
    # Evergreen), else Windows-1250, what a Polish system without UTF-8 most likely sends.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1250", errors="replace")


def decode(frame: bytes) -> Message:
    """Decode one frame (CR optional); a wrong checksum or a malformed frame raises."""
    data = frame.rstrip(b"\r\n")
    sequence = None
    trailer = _TRAILER.search(data)
    if trailer:
        az_end = trailer.start("sum")
        if (sum(data[:az_end]) + int(trailer["sum"], 16)) & 0xFFFF:
            raise Sip2ProtocolError("checksum error in the server's response")
        if trailer["seq"] is not None:
            sequence = int(trailer["seq"])
        data = data[: trailer.start()]
    if len(data) < 2 or not data[:2].isdigit():
        raise Sip2ProtocolError(f"not a SIP2 message: {data[:20]!r}")
    command = data[:2].decode("ascii")
    width = _FIXED_WIDTH.get(command, 0)
    text = _text(data[2:])
    if len(text) < width:
        raise Sip2ProtocolError(f"message {command} is too short ({len(text)} < {width})")
    fields: dict[str, list[str]] = {}
    for piece in text[width:].split("|"):
        if len(piece) >= 2:
            fields.setdefault(piece[:2], []).append(piece[2:])
    return Message(command, text[:width], fields, sequence)


def redact(frame: bytes | str) -> str:
    """A frame fit for a log: passwords and the patron's personal data masked."""
    text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="replace")
    text = text.rstrip("\r\n")
    pieces = text.split("|")
    for i, piece in enumerate(pieces):
        if piece[:2] in _SECRET_FIELDS or piece[:2] in _PERSONAL_FIELDS:
            pieces[i] = piece[:2] + "***"
    return "|".join(pieces)


# -- 64 -> ReaderFacts -----------------------------------------------------------------------


def split_name(personal_name: str) -> tuple[str, str]:
    """``(first_name, last_name)`` from SIP2's one personal-name field."""
    name = " ".join(personal_name.split())
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.rpartition(" ")
    return first, last


_AMOUNT_JUNK = re.compile(r"[^0-9.,\-]")


def parse_amount(text: str | None) -> Decimal:
    """A fee amount as the ILS wrote it: "12.50", "12,50", "1 234,50 zł", "-3.00"."""
    text = (text or "").strip()
    if not text:
        return Decimal("0")
    raw = _AMOUNT_JUNK.sub("", text)
    # The last separator is the decimal one; any earlier one groups thousands.
    last = max(raw.rfind("."), raw.rfind(","))
    if last >= 0:
        raw = re.sub(r"[.,]", "", raw[:last]) + "." + raw[last + 1 :]
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise Sip2ProtocolError(f"fee amount {text!r} is not a number") from None


_DATE_FORMATS = (
    (re.compile(r"^(\d{4})(\d{2})(\d{2})"), (1, 2, 3)),  # YYYYMMDD[    HHMMSS]
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})"), (1, 2, 3)),  # YYYY-MM-DD
    (re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})"), (3, 2, 1)),  # DD.MM.YYYY
    (re.compile(r"^(\d{2})/(\d{2})/(\d{4})"), (3, 1, 2)),  # MM/DD/YYYY (Polaris)
)


def parse_date(text: str | None) -> date | None:
    """A date from an extension field; ``None`` when absent or not a date we know."""
    value = (text or "").strip()
    for regex, (y, m, d) in _DATE_FORMATS:
        match = regex.match(value)
        if match:
            try:
                return date(int(match[y]), int(match[m]), int(match[d]))
            except ValueError:
                return None
    return None


def _count(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise Sip2ProtocolError(f"summary count {text!r} is not a number")
    return int(text)


def facts_from_patron_information(
    message: Message, *, card: str, today: date
) -> ReaderFacts | None:
    """Map a 64 response to the facts the rules see; ``None`` when the card does not exist."""
    if message.command != "64":
        raise Sip2ProtocolError(f"expected a 64 response, got {message.command}")
    status = message.fixed[0:14]
    overdue = _count(message.fixed[39:43])
    personal_name = message.get("AE") or ""
    valid = (message.get("BL") or "").strip().upper()
    if valid == "N" or (not valid and not personal_name.strip()):
        return None
    if overdue is None:
        overdue = len(message.fields.get("AT", []))
    balance = max(parse_amount(message.get("BV")), Decimal("0"))
    first_name, last_name = split_name(personal_name)
    email = re.split(r"[,;\s]+", (message.get("BE") or "").strip())[0] or None

    valid_until = None
    for field_id in ("PX", "PA", "PE"):
        valid_until = parse_date(message.get(field_id))
        if valid_until is not None:
            break
    birth_date = parse_date(message.get("PB")) or parse_date(message.get("BC"))

    blocked = (
        status[CARD_REPORTED_LOST] == "Y"
        or (message.get("PY") or "").strip().upper() == "Y"
        or (status[CHARGE_PRIVILEGES_DENIED] == "Y" and balance == 0 and overdue == 0)
    )
    if blocked:
        # The last day of the month before yesterday's month (see the module docstring).
        past = (today - timedelta(days=1)).replace(day=1) - timedelta(days=1)
        if valid_until is None or valid_until > past:
            valid_until = past

    return ReaderFacts(
        card_number=card,
        first_name=first_name,
        last_name=last_name,
        email=email,
        valid_until=valid_until,
        balance_due=balance,
        overdue_items=overdue,
        data_updated_on=None,
        last_loan_on=None,
        birth_date=birth_date,
    )


# -- the client --------------------------------------------------------------------------------


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
