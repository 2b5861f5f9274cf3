"""SIP2 frames on the wire: encoding, decoding with checksum and sequence, and redaction.

Every request carries a sequence number and a checksum (``AY``/``AZ``); a response that
carries them is verified. Frames are logged at DEBUG only through ``redact``, which masks
the login password (``CO``), terminal and patron passwords (``AC``/``AD``) and the patron's
personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Message", "Sip2ProtocolError", "checksum", "decode", "encode", "redact"]

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


class Sip2ProtocolError(Exception):
    """The server's answer is not a SIP2 answer we can trust (garbled, wrong checksum...)."""


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
