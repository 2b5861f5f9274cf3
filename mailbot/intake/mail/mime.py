"""The MIME walk: from a mail's bytes to the text parts a reader would see, each decoded
only when its text is asked for (transfer encoding, charset, RFC 3676 format=flowed).

The stdlib parser runs with ``policy.compat32``: ``policy.default`` builds header objects
for every field and is many times slower. Its limits (MAX_MIME_DEPTH, MAX_TEXT_PARTS,
MAX_BOUNDARIES) keep crafted mail from costing more than real mail does.
"""

from __future__ import annotations

import binascii
import re
from email import policy as _email_policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

from mailbot.intake.mail.charset import decode_bytes
from mailbot.intake.mail.headers import decode_base64

# Deeper MIME trees than this are not real mail; their deeper parts are ignored.
MAX_MIME_DEPTH = 20
# Text parts beyond this many are ignored (a mail with thousands of parts is not a request).
MAX_TEXT_PARTS = 50
# The stdlib parser recurses once per nested multipart and costs O(depth^2); past this many
# boundaries we read the headers only and leave the body empty.
MAX_BOUNDARIES = 300

_PARSER = BytesParser(policy=_email_policy.compat32)
_HEADER_PARSER = BytesHeaderParser(policy=_email_policy.compat32)


_CONTENT_TYPE = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*/\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)")


_PARAMS = {
    name: re.compile(rf";\s*{name}(\*)?\s*=\s*(?:\"([^\"]*)\"|([^\s;\"]+))", re.IGNORECASE)
    for name in ("charset", "format", "delsp")
}
_ATTACHMENT = re.compile(r"\s*attachment", re.IGNORECASE)


def _param(value: str | None, name: str) -> str | None:
    """One Content-Type parameter, quoted or not; RFC 2231 charset'lang'value tolerated."""
    if not value or ";" not in value:
        return None
    match = _PARAMS[name].search(value)
    if not match:
        return None
    found = match.group(2) if match.group(2) is not None else match.group(3)
    if match.group(1) and "'" in found:
        found = found.split("'", 1)[0]
    return found.strip() or None


def media_type(value: str | None) -> str:
    """The "type/subtype" of a Content-Type value, lowercased; text/plain when there is none."""
    if value is None:
        return "text/plain"
    match = _CONTENT_TYPE.match(value)
    return f"{match.group(1)}/{match.group(2)}".lower() if match else "text/plain"


_PART_FIELDS = ("content-type", "content-transfer-encoding", "content-disposition")


def _part_fields(part: Message) -> tuple[str | None, str, str]:
    """(Content-Type, Content-Transfer-Encoding, Content-Disposition) of one part, raw."""
    found: dict[str, str] = {}
    for name, value in part.raw_items():
        key = name.lower()
        if key in _PART_FIELDS and key not in found:
            found[key] = value
    return (
        found.get("content-type"),
        found.get("content-transfer-encoding", ""),
        found.get("content-disposition", ""),
    )


class TextPart:
    """One text part, decoded only when its text is asked for: the HTML twin of a
    text/plain alternative is usually never needed."""

    __slots__ = ("_payload", "_content_type", "_encoding", "html", "quoted", "_body")

    def __init__(
        self, payload: str, content_type: str | None, encoding: str, html: bool, quoted: bool
    ) -> None:
        self._payload = payload
        self._content_type = content_type
        self._encoding = encoding
        self.html = html
        self.quoted = quoted
        self._body: str | None = None

    @property
    def body(self) -> str:
        if self._body is None:
            raw_type = self._content_type
            body = decode_bytes(
                _payload_bytes(self._payload, self._encoding), _param(raw_type, "charset")
            )
            if not self.html and (_param(raw_type, "format") or "").lower() == "flowed":
                body = _unflow(body, (_param(raw_type, "delsp") or "").lower() == "yes")
            self._body = body
        return self._body


def _payload_bytes(payload: str, encoding: str) -> bytes:
    try:
        data = payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        data = payload.encode("utf-8", "surrogateescape")
    encoding = encoding.strip().lower()
    try:
        if encoding == "base64":
            try:
                return binascii.a2b_base64(data)
            except binascii.Error:
                return decode_base64(data.decode("ascii", "replace"))
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        pass
    return data


def _leaves(part: Message, depth: int, quoted: bool) -> list[TextPart]:
    """The text parts a reader would see, in order; one alternative per multipart/alternative."""
    if depth > MAX_MIME_DEPTH:
        return []
    raw_type, encoding, disposition = _part_fields(part)
    ctype = media_type(raw_type)
    # The stored payload itself: get_payload() would already have decoded an 8-bit body
    # with the declared charset, right or wrong, and lost the bytes.
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        children = [c for c in payload if isinstance(c, Message)]
        if ctype.startswith("message/"):
            if ctype != "message/rfc822":  # delivery-status, disposition-notification...
                return []
            return [leaf for c in children[:1] for leaf in _leaves(c, depth + 1, True)]
        if ctype == "multipart/alternative":
            options = [o for o in (_leaves(c, depth + 1, quoted) for c in children) if o]
            for option in options:
                if not any(leaf.html for leaf in option) and any(
                    leaf.body.strip() for leaf in option
                ):
                    return option
            return options[-1] if options else []  # RFC 2046: the richest comes last
        found: list[TextPart] = []
        for child in children:
            found.extend(_leaves(child, depth + 1, quoted))
            if len(found) >= MAX_TEXT_PARTS:
                break
        return found
    if not isinstance(payload, str) or _ATTACHMENT.match(disposition):
        return []
    if ctype == "text/html":
        return [TextPart(payload, raw_type, encoding, True, quoted)]
    if ctype in ("text/plain", "text/enriched") or ctype.startswith("multipart/"):
        # (a multipart whose boundary is missing is read as text)
        return [TextPart(payload, raw_type, encoding, False, quoted)]
    return []


def _unflow(text: str, delsp: bool) -> str:
    """Join RFC 3676 format=flowed soft line breaks, keeping quote depth."""
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        if pending is not None and depth == pending_depth:
            content = pending + content
        elif pending is not None:
            out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
        pending = None
        if content.endswith(" ") and content != "-- ":
            pending = content[:-1] if delsp else content
            pending_depth = depth
            continue
        out.append(">" * depth + (" " if depth and content else "") + content)
    if pending is not None:
        out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
    return "\n".join(out)


def read_message(data: bytes) -> tuple[Message, bool]:
    """The stdlib's parse of a mail's bytes, and whether its body could be read too.

    Never raises: a body the parser gives up on (RecursionError on deep nesting, or
    anything else), or one with more than MAX_BOUNDARIES boundaries, leaves only the
    headers (read from the header block alone), and a mail whose headers cannot be read
    either an empty Message."""
    msg: Message | None = None
    if data.count(b"oundary") <= MAX_BOUNDARIES:
        try:
            msg = _PARSER.parsebytes(data)
        except Exception:  # noqa: BLE001 - RecursionError on deep nesting, or anything else
            msg = None
    body_ok = msg is not None
    if msg is None:
        try:
            msg = _HEADER_PARSER.parsebytes(_split_head(data))
        except Exception:  # noqa: BLE001
            msg = Message()
    return msg, body_ok


def text_parts(message: Message) -> list[TextPart]:
    """The text parts a reader would see, in order, at most MAX_TEXT_PARTS of them."""
    return _leaves(message, 0, False)[:MAX_TEXT_PARTS]


def _split_head(data: bytes) -> bytes:
    """The header block of a message (for when the body cannot be parsed)."""
    ends = [at + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (at := data.find(sep)) >= 0]
    return data[: min(ends)] if ends else data
