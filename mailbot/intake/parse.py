"""Understanding one patron mail: headers, subject, body text, card numbers, loop signs.

Pure functions from bytes and strings to values. Nothing here touches a socket, a file or a
database, and nothing here raises on bad mail: whatever arrives in a mailbox is someone's
real message (or someone's attack), and the worst it may earn is an empty field.

- ``parse_mail`` turns raw RFC 5322 bytes into a ``ParsedMail``.
- ``match_service`` / ``match_test_service`` read the subject (SPEC §2.3).
- ``find_cards`` picks the card number out of the body, quotes included (SPEC §2.4).
- ``surname_matches`` and ``extract_name`` serve the name check (SPEC §2.5).
- ``loop_reason`` says why a mail must get no reply (SPEC §2.10, RFC 3834).

The stdlib parser runs with ``policy.compat32``: ``policy.default`` builds header objects
for every field and is many times slower. Headers and charsets are decoded here instead,
more tolerantly than the stdlib does.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from email import policy as _email_policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache
from html import unescape as _html_unescape
from typing import Any

__all__ = [
    "DEFAULT_CARD_PATTERN",
    "DEFAULT_MAX_BYTES",
    "OWN_MESSAGE_ID_PREFIX",
    "CardSearch",
    "Headers",
    "MailReading",
    "ParsedMail",
    "decode_bytes",
    "decode_header_value",
    "extract_name",
    "find_cards",
    "fold",
    "html_to_text",
    "loop_reason",
    "match_service",
    "match_test_service",
    "parse_mail",
    "read_mail",
    "split_quotes",
    "surname_matches",
]

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_CARD_PATTERN = r"[0-9]{5,14}"
OWN_MESSAGE_ID_PREFIX = "<mailbot."

# Deeper MIME trees than this are not real mail; their deeper parts are ignored.
MAX_MIME_DEPTH = 20
# Text parts beyond this many are ignored (a mail with thousands of parts is not a request).
MAX_TEXT_PARTS = 50
# The stdlib parser recurses once per nested multipart and costs O(depth^2); past this many
# boundaries we read the headers only and leave the body empty.
MAX_BOUNDARIES = 300
# "> " prefixes beyond this depth add nothing but bytes.
MAX_QUOTE_DEPTH = 10

_PARSER = BytesParser(policy=_email_policy.compat32)
_HEADER_PARSER = BytesHeaderParser(policy=_email_policy.compat32)


# --------------------------------------------------------------------------- values


class Headers(Mapping[str, str]):
    """Header fields, looked up case-insensitively, decoded on first access.

    ``headers[name]`` is the first occurrence (the topmost, i.e. the one added last on the
    way in); ``get_all`` returns every occurrence in order; ``raw`` the undecoded value.
    Decoding is lazy because most fields (Received, DKIM-Signature...) are never read.
    """

    __slots__ = ("_items", "_first", "_decoded")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = tuple(items)
        first: dict[str, str] = {}
        for name, value in self._items:
            first.setdefault(name.lower(), value)
        self._first = first
        self._decoded: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        value = self._decoded.get(key)
        if value is None:
            value = self._decoded[key] = decode_header_value(self._first[key])
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def raw(self, name: str) -> str | None:
        """The first occurrence as it stands in the mail (folded, maybe 8-bit), or None."""
        return self._first.get(name.lower())

    def get_all(self, name: str) -> tuple[str, ...]:
        name = name.lower()
        return tuple(decode_header_value(v) for k, v in self._items if k.lower() == name)

    def __repr__(self) -> str:
        return f"Headers({len(self._items)} fields)"


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """Everything mailbot needs to know about one mail, as plain values."""

    message_id: str | None
    subject: str
    from_address: str | None
    from_name: str | None
    reply_to: str | None
    return_path: str | None  # None: header absent; "": the null path <>
    date: datetime | None  # always aware; -0000 and zone-less dates are UTC
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str  # the body as plain text, quoted parts marked with "> "
    unquoted: str  # what the sender wrote now
    quoted: str  # what they quoted (earlier mails, forwarded messages)
    content_type: str
    truncated: bool  # the mail was larger than max_bytes; only its start was read
    headers: Headers = field(default_factory=Headers, compare=False, repr=False)
    # read_mail's answer for one card pattern, when the parsing workers already worked it
    # out (parse_messages); the mail's content is the same either way.
    reading: MailReading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CardSearch:
    """What ``find_cards`` saw: every plausible card number, and the one it chose, if any."""

    candidates: tuple[str, ...]
    card: str | None
    from_quote: bool

    @property
    def ambiguous(self) -> bool:
        return self.card is None and len(self.candidates) > 1


@dataclass(frozen=True, slots=True)
class MailReading:
    """What deciding reads in a mail for one library's card pattern (``read_mail``)."""

    pattern: str
    cards: CardSearch
    name: str | None  # extract_name with the card chosen (None: no card)


# --------------------------------------------------------------------------- charsets

# Names mail software writes that Python does not know, or knows as a narrower charset.
_CHARSET_ALIASES = {
    "x-unknown": "",
    "unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
    "default_charset": "",
    "8bit": "",
    "none": "",
    "cp-1250": "cp1250",
    "x-cp1250": "cp1250",
    "win-1250": "cp1250",
    "windows1250": "cp1250",
    "iso8859_2": "iso-8859-2",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "x-mac-ce": "mac-latin2",
}
# Codecs that are not charsets, or that would interpret the bytes as code.
_BANNED_CODECS = frozenset(
    {"raw-unicode-escape", "unicode-escape", "idna", "punycode", "undefined", "charmap"}
)
_CHARSET_NAME = re.compile(r"[A-Za-z0-9._:+-]{1,40}")
_ALL_BYTES = bytes(range(256))


@lru_cache(maxsize=256)
def _codec(declared: str | None) -> tuple[str | None, bool]:
    """Return (Python codec for a declared charset or None, whether valid UTF-8 overrides it).

    Valid UTF-8 overrides a single-byte label: mail labelled us-ascii or iso-8859-1 but
    written in UTF-8 is common, while Polish single-byte text that is also valid UTF-8 is
    rare (and caught by _IMPLAUSIBLE in decode_bytes).
    """
    if not declared:
        return None, True
    name = declared.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name or not _CHARSET_NAME.fullmatch(name):
        return None, True
    try:
        codec = codecs.lookup(name).name
        if codec in _BANNED_CODECS:
            return None, True
        sample = _ALL_BYTES.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None, True
    if codec in ("utf-8", "utf-8-sig"):
        return "utf-8", False
    if codec.startswith("iso2022") or codec in ("utf-7", "hz"):
        return codec, False  # 7-bit charsets where plain ASCII bytes are not ASCII text
    if codec == "ascii":
        return None, True  # 8-bit bytes under us-ascii: the label is wrong, guess
    return codec, len(sample) == 256  # one char per byte: a single-byte charset


def _guess_polish(data: bytes) -> str:
    """Decode 8-bit bytes that are not UTF-8 as cp1250 or iso-8859-2, whichever fits.

    The two differ where it matters for Polish: ą ś ź Ą Ś Ź. Bytes 0x80-0x9f are control
    codes in iso-8859-2 but letters and „quotes” in cp1250.
    """
    iso = sum(data.count(b) for b in (b"\xb1", b"\xb6", b"\xbc", b"\xa1", b"\xa6", b"\xac"))
    win = len(data) - len(data.translate(None, bytes(range(0x80, 0xA0))))
    win += data.count(b"\xb9") + data.count(b"\xa5")
    return data.decode("iso-8859-2" if iso > win else "cp1250", "replace")


def _looks_utf8(data: bytes) -> bool:
    """Text declared UTF-8 with a few broken bytes is still UTF-8; mostly broken is not."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return bad * 4 <= non_ascii - bad


# What valid UTF-8 made of Polish single-byte text decodes to ("PÓŁ" in cp1250 is the
# UTF-8 of "Pӣ"): IPA, combining marks, Cyrillic letters Polish or Ukrainian mail never
# uses. Romanian ș ț (U+0218-U+021B) are left out.
_IMPLAUSIBLE = re.compile("[\u0180-\u0217\u021c-\u036f\u0460-\u048f\u0492-\u052f]")


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Bytes to text whatever the label says: declared, wrong, missing or unknown."""
    codec, utf8_wins = _codec(declared)
    if codec == "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace") if _looks_utf8(data) else _guess_polish(data)
    if codec is not None and not utf8_wins:  # UTF-16, CJK multi-byte charsets
        return data.decode(codec, "replace")
    if data.isascii():
        return data.decode("ascii")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not _IMPLAUSIBLE.search(text):
            return text
    if codec is not None:
        return data.decode(codec, "replace")
    return _guess_polish(data)


# --------------------------------------------------------------------------- headers

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def _raw_to_str(value: str) -> str:
    """A compat32 header value (8-bit bytes as surrogate escapes) to real text, unfolded."""
    if not value.isascii():
        try:
            value = decode_bytes(value.encode("ascii", "surrogateescape"))
        except UnicodeEncodeError:  # already real text
            pass
    if "\n" in value or "\r" in value:
        value = value.replace("\r", "").replace("\n", "")
    return value


def _decode_b(text: str) -> bytes:
    text = _NOT_BASE64.sub("", text)
    text = text[: len(text) - (len(text) % 4 == 1)]
    return binascii.a2b_base64(text + "=" * (-len(text) % 4))


def _decode_words(value: str) -> str:
    """RFC 2047 encoded-words to text, tolerating what real mailers get wrong.

    Adjacent words in one charset are joined before decoding, so a character split across
    two words survives; whitespace between encoded words is dropped as the RFC says.
    """
    if "=?" not in value:
        return value
    pieces: list[tuple[str | None, str | bytes]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        pos = match.end()
        if gap and not (gap.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, gap))
        charset = match.group(1).split("*", 1)[0].lower()
        encoded = match.group(3)
        try:
            if match.group(2) in "bB":
                data = _decode_b(encoded)
            else:
                data = binascii.a2b_qp(encoded.encode("utf-8", "surrogateescape"), header=True)
        except (binascii.Error, ValueError):
            pieces.append((None, match.group(0)))
            continue
        last = pieces[-1] if pieces else None
        if last is not None and last[0] == charset and isinstance(last[1], bytes):
            pieces[-1] = (charset, last[1] + data)
        else:
            pieces.append((charset, data))
    pieces.append((None, value[pos:]))
    return "".join(
        part if isinstance(part, str) else decode_bytes(part, charset) for charset, part in pieces
    )


def decode_header_value(value: str) -> str:
    """A raw header value to display text: 8-bit bytes, RFC 2047 words, folding."""
    return _decode_words(_raw_to_str(value)).strip()


def _collapse(text: str) -> str:
    return " ".join(text.split())


_MAX_ADDRESS_HEADER = 2000  # longer From/Reply-To values are junk; cut before any regex
_SIMPLE_ADDRESS = re.compile(r"\s*<?\s*([^\s<>\"(),;:@]+@[^\s<>\"(),;:@]+)\s*>?\s*")
_NAME_ADDRESS = re.compile(r"\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^<>\"]*?))\s*<\s*([^\s<>]*)\s*>\s*")


# Outside quoted strings and comments, a group (``Friends: a@b.pl;``) has these.
_GROUP_SYNTAX = re.compile(r"[:;]")
_QUOTED_OR_COMMENT = re.compile(r"\"(?:[^\"\\]|\\.)*\"|\((?:[^()\\]|\\.)*\)")


def _parse_address(value: str | None) -> tuple[str, str] | None:
    """(display name, lowercased addr-spec) of the one mailbox in a header, or None.

    The addr-spec comes out as the real text, or as something intake refuses
    (mailbot.addresses.usable_address), never as a guess: 8-bit bytes in it must be UTF-8
    (RFC 6532), and RFC 2047 words in it (Python's email package writes
    ``=?utf-8?b?…?=@example.net`` for a non-ASCII local part) are decoded strictly, before
    lowercasing, which would corrupt their base64. A header naming several mailboxes or a
    group gives an empty addr-spec: whom to answer is for staff to say."""
    if value is None:
        return None
    raw = value[:_MAX_ADDRESS_HEADER]
    found = _name_and_address(_raw_to_str(raw))
    if found is None:
        return None
    name, address = found
    if not address.isascii() and not raw.isascii():
        # _raw_to_str reads 8-bit bytes as whatever charset fits the name best.
        strict = _strict_utf8(raw)
        again = _name_and_address(strict) if strict is not None else None
        address = again[1] if again is not None else ""
    name = _collapse(_decode_words(name)).strip("\"' ")
    return name, _decoded_address(address)


def _name_and_address(value: str) -> tuple[str, str] | None:
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match:
        return "", match.group(1)
    match = _NAME_ADDRESS.fullmatch(value)
    if match:
        quoted, bare, address = match.groups()
        if quoted is not None:
            return re.sub(r"\\(.)", r"\1", quoted), address
        # ``a@b.pl, Ola <o@b.pl>``: two mailboxes.
        return bare, "" if "@" in bare and "," in bare else address
    try:
        found = [pair for pair in getaddresses([value]) if any(pair)]
    except Exception:  # noqa: BLE001 - a header must never break parsing
        return None
    if not found:
        return None
    name, address = found[0]
    if len(found) > 1 or _GROUP_SYNTAX.search(_QUOTED_OR_COMMENT.sub("", value)):
        address = ""
    return name, address


def _strict_utf8(raw: str) -> str | None:
    """A compat32 header value as UTF-8 text, or None when its 8-bit bytes are not UTF-8."""
    try:
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return None
    return text.replace("\r", "").replace("\n", "")


def _decoded_address(address: str) -> str:
    """RFC 2047 words in an addr-spec decoded in their declared charset, strictly; a word
    that does not decode is left as it is (and the address refused)."""
    address = address.strip()
    if "=?" not in address:
        return address.lower()
    out: list[str] = []
    pending: tuple[str, bytes, str] | None = None  # charset, bytes, the words as written
    pos = 0

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            charset, data, written = pending
            try:
                out.append(data.decode(charset))
            except (LookupError, UnicodeError):
                out.append(written)
            pending = None

    for match in _ENCODED_WORD.finditer(address):
        gap = address[pos:match.start()]
        pos = match.end()
        if gap:
            flush()
            out.append(gap)
        charset = match.group(1).split("*", 1)[0].lower()
        try:
            data = _decode_b(match.group(3)) if match.group(2) in "bB" else \
                binascii.a2b_qp(match.group(3).encode("ascii"), header=True)
        except (binascii.Error, ValueError):
            flush()
            out.append(match.group(0))
            continue
        if pending is not None and pending[0] == charset:  # a character may span two words
            pending = (charset, pending[1] + data, pending[2] + match.group(0))
        else:
            flush()
            pending = (charset, data, match.group(0))
    flush()
    out.append(address[pos:])
    return "".join(out).lower()


_MESSAGE_ID = re.compile(r"<[^<>]*>")


def _message_ids(value: str | None) -> list[str]:
    if not value:
        return []
    ids = ["".join(m.split()) for m in _MESSAGE_ID.findall(value)]
    return [i for i in ids if i != "<>"] or value.split()


_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_RFC5322_DATE = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+([+-])(\d{2})(\d{2})(?:\s.*)?"
)


# A date outside these bounds is nonsense (a client's clock, or an attack: year 1 or 9999
# overflow as soon as they are converted to UTC or stored) and counts as no date at all.
# The future bound allows for any time-zone mistake (at most 26 h) plus a skewed clock.
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=2)
_WRITTEN_YEAR = re.compile(r"\d{1,2}\s+[A-Za-z]{3}\s+(\d{3,4})\b")  # "1 Jan 0001"


def plausible_date(when: datetime, *, now: datetime | None = None) -> bool:
    """Whether an aware instant (a Date header, an INTERNALDATE) can be a real mail's:
    from 1990 up to two days after ``now``."""
    now = now or datetime.now(timezone.utc)
    try:
        return EARLIEST_DATE <= when <= now + FUTURE_SLACK
    except (OverflowError, ValueError, TypeError):  # naive, or beyond datetime's range
        return False


def _parse_date(value: str | None) -> datetime | None:
    """An aware datetime; "-0000" and zone-less dates are UTC; nonsense is None, and so
    is a date outside ``plausible_date`` (before 1990, or more than two days ahead)."""
    if not value:
        return None
    value = value[:200]
    match = _RFC5322_DATE.fullmatch(value)
    month = _MONTHS.get(match.group(2).lower()) if match else None
    when: datetime | None
    if match and month:  # the usual shape, without the stdlib's slower general parser
        day, _, year, hour, minute, second, sign, tzh, tzm = match.groups()
        offset = int(tzh) * 60 + int(tzm)
        try:
            zone = (
                timezone.utc
                if offset == 0
                else timezone(timedelta(minutes=-offset if sign == "-" else offset))
            )
            when = datetime(
                int(year), month, int(day), int(hour), int(minute), int(second or 0), tzinfo=zone
            )
        except ValueError:
            return None
    else:
        try:
            when = parsedate_to_datetime(_collapse(value))
        except Exception:  # noqa: BLE001 - any unparseable date is simply unknown
            return None
        if when is None:
            return None
        written = _WRITTEN_YEAR.search(value)
        if written and int(written.group(1)) != when.year:
            return None  # the stdlib reads "0001" as 2001 (two-digit years): year 1 it is
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when if plausible_date(when) else None


# --------------------------------------------------------------------------- MIME bodies

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


def _content_type(value: str | None) -> str:
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


class _Leaf:
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
                return _decode_b(data.decode("ascii", "replace"))
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        pass
    return data


def _leaves(part: Message, depth: int, quoted: bool) -> list[_Leaf]:
    """The text parts a reader would see, in order; one alternative per multipart/alternative."""
    if depth > MAX_MIME_DEPTH:
        return []
    raw_type, encoding, disposition = _part_fields(part)
    ctype = _content_type(raw_type)
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
        found: list[_Leaf] = []
        for child in children:
            found.extend(_leaves(child, depth + 1, quoted))
            if len(found) >= MAX_TEXT_PARTS:
                break
        return found
    if not isinstance(payload, str) or _ATTACHMENT.match(disposition):
        return []
    if ctype == "text/html":
        return [_Leaf(payload, raw_type, encoding, True, quoted)]
    if ctype in ("text/plain", "text/enriched") or ctype.startswith("multipart/"):
        # (a multipart whose boundary is missing is read as text)
        return [_Leaf(payload, raw_type, encoding, False, quoted)]
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


# Zero-width characters and soft hyphens go; no-break spaces become spaces.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_INVISIBLE.update({0xA0: " ", 0x202F: " ", 0x2007: " "})
_INVISIBLE_CHARS = re.compile("[" + "".join(map(chr, _INVISIBLE)) + "]")


def _plain(text: str) -> str:
    """Line ends unified, invisible characters and trailing spaces gone."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and _INVISIBLE_CHARS.search(text):
        text = text.translate(_INVISIBLE)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return text.strip("\n")


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))


# --------------------------------------------------------------------------- HTML

_HTML_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)|<(/?)([A-Za-z][^\s/<>]*)[^<>]*>|<[!?/][^<>]*>", re.DOTALL
)
_HTML_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_HTML_SKIP = frozenset({"script", "style", "head", "title", "template", "xml", "svg", "noscript"})
_HTML_BLOCK = frozenset(
    "address article aside body caption center dd div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr html li main nav ol p section table tbody "
    "tfoot thead tr ul".split()
)


@lru_cache(maxsize=16)
def _own(addresses: frozenset[str]) -> frozenset[str]:
    """The bot's own addresses as loop_reason compares them: asked for every mail, and a
    consortium's settings have hundreds (the same set each time: worked out once)."""
    return frozenset(a.strip().lower() for a in addresses)


@lru_cache(maxsize=16)
def _html_close(name: str) -> re.Pattern[str]:
    if name == "head":  # an unclosed head ends where the body starts
        return re.compile(r"</head\s*>|(?=<body[\s>])", re.IGNORECASE)
    return re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE)


def html_to_text(html: str) -> str:
    """HTML to plain text keeping the line structure; blockquote lines get "> " prefixes.

    A small linear tokenizer rather than html.parser: it is several times faster on the
    bloated HTML Outlook writes and cannot be driven into quadratic time by unclosed tags.
    """
    lines: list[str] = []
    current: list[str] = []
    depth = 0
    pre = 0

    def newline(hard: bool = False) -> None:
        if current:
            line = "".join(current)
            line = line.replace("\xa0", " ").strip() if pre else " ".join(line.split())
            lines.append(">" * min(depth, MAX_QUOTE_DEPTH) + (" " if depth and line else "") + line)
            current.clear()
        elif hard:
            lines.append(">" * min(depth, MAX_QUOTE_DEPTH))

    def add(chunk: str) -> None:
        if "&" in chunk:
            chunk = _html_unescape(chunk)
        if pre:
            first, *rest = chunk.replace("\r\n", "\n").split("\n")
            current.append(first)
            for line in rest:
                newline(hard=True)
                current.append(line)
            return
        chunk = _HTML_SPACE.sub(" ", chunk)
        if chunk == " " and (not current or current[-1].endswith(" ")):
            return
        current.append(chunk)

    pos = 0
    end = len(html)
    while pos < end:
        match = _HTML_TOKEN.search(html, pos)
        if match is None:
            add(html[pos:])
            break
        if match.start() > pos:
            add(html[pos : match.start()])
        pos = match.end()
        name = match.group(2)
        if name is None:
            continue  # comment, doctype, processing instruction
        name = name.lower()
        closing = match.group(1) == "/"
        if name in _HTML_SKIP:
            if not closing:
                close = _html_close(name).search(html, pos)
                pos = close.end() if close else end
            continue
        if name == "br":
            newline(hard=True)
        elif name == "blockquote":
            newline()
            depth = max(0, depth - 1) if closing else depth + 1
        elif name == "pre":
            newline()
            pre = max(0, pre - 1) if closing else pre + 1
        elif name in _HTML_BLOCK:
            newline()
        elif name in ("td", "th") and closing:
            current.append(" ")
    newline()
    return _plain(_squeeze_blank_lines("\n".join(lines)))


_BLANK_LINES = re.compile(r"\n(?:[ \t>]*\n){2,}")


def _squeeze_blank_lines(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", text)


# --------------------------------------------------------------------------- quotes

_DASHED_SEPARATOR = re.compile(
    r"-{2,}\s*(?:original message|oryginalna wiadomo\S*|wiadomo\S* oryginalna|"
    r"forwarded message|przekazana wiadomo\S*|wiadomo\S* przekazana(?: dalej)?|"
    r"ursprüngliche nachricht|message d'origine|reply message)\s*-{2,}"
    r"|-{3,}[^-]{3,60}-{3,}",
    re.IGNORECASE,
)
_FORWARD_INTRO = re.compile(
    r"(?:begin forwarded message|pocz\S+ przekazywanej wiadomo\S*|"
    r"wiadomo\S* napisana przez .{0,200})\s*:",
    re.IGNORECASE,
)
# The verb that ends an attribution line, just before its colon.
_ATTRIBUTION_VERBS = (
    "wrote", "napisał(a)", "napisał", "napisała", "napisal(a)", "napisal", "napisala",
    "pisze", "schrieb", "a écrit", "escribió", "ha scritto", "skrev",
    "написал(а)", "написал", "написала",
)  # fmt: skip
_ATTRIBUTION_START = re.compile(
    r"(?:w dniu|dnia|on|am|le|el|il|em|op|den|użytkownik|uzytkownik)\b", re.IGNORECASE
)
# The fields of a quoted message's header block as mail clients write them, in any order:
# Outlook desktop, web and mobile ("From: Sent: To: Subject:", in Polish "Od: Wysłane:" or
# "Wysłano:" "Do: Temat:"), Apple Mail's "Od: Temat: Data: Do:", Thunderbird's forward
# "Temat: Data: Nadawca: Adresat:", webmails' "Temat: Od: Data: Do:". text/plain made from
# HTML may bold the names ("*Od:*"), and a block may be flattened onto one line.
_FIELD_SENDER = r"from|od|nadawca|von|de|da"
_FIELD_SENT = (
    r"sent|wysłane|wysłano|wyslane|wyslano|date|data|gesendet|datum|envoyé|enviado|inviato"
)
_FIELD_OTHER = (
    r"to|do|adresat|adresaci|temat|subject|cc|dw|kopia|odpowiedź do|reply-to|an|betreff"
    r"|objet|asunto|oggetto"
)
_FIELD = (
    rf"\*{{0,2}}(?:(?P<sender>{_FIELD_SENDER})|(?P<sent>{_FIELD_SENT})|{_FIELD_OTHER})"
    r"[ \t]*:\*{0,2}(?P<value>[ \t]*[^\s*])?"
)
_HEADER_FIELD = re.compile(_FIELD, re.IGNORECASE)
_HEADER_FIELD_INLINE = re.compile(rf"(?<=\s){_FIELD}", re.IGNORECASE)
_HEADER_BLOCK_LINES = 8  # how far below its first field a block's sender and date may be
_RULE_LINE = re.compile(r"[_\-=]{8,}")


def _is_attribution(text: str) -> bool:
    """ "On <date>, <who> wrote:" and its translations: ends in a verb and a colon, and has
    an opening word, an address or a date in it."""
    if not text.endswith(":"):
        return False
    head = text[:-1].rstrip().lower()
    verb = next((v for v in _ATTRIBUTION_VERBS if head.endswith(v)), None)
    if verb is None or head[-len(verb) - 1 : -len(verb)].isalpha():
        return False
    return bool(
        _ATTRIBUTION_START.match(text) or "@" in text or any(ch.isdigit() for ch in text)
    )


def _field_kind(match: re.Match[str]) -> str:
    if match.group("sender") is not None:
        return "sender" if match.group("value") else "other"  # a bare "Od:" names no one
    return "sent" if match.group("sent") is not None else "other"


def _header_fields(line: str) -> set[str]:
    """The kinds of the header fields on a line that starts with one: "sender", "sent",
    "other"; empty when the line does not start with a field."""
    first = _HEADER_FIELD.match(line) if 0 <= line.find(":", 0, 24) else None
    if first is None:
        return set()
    kinds = {_field_kind(first)}
    if line.count(":") > 1:  # flattened onto one line: "Od: … Wysłane: … Temat: …"
        kinds.update(_field_kind(m) for m in _HEADER_FIELD_INLINE.finditer(line, first.end()))
    return kinds


def _header_block_at(lines: list[str], i: int) -> int | None:
    """If a quoted message's header block starts at line i, where it starts (the rule line
    above it, when there is one): a sender and a date among the header fields from line i
    on. One line that is not a field may come between two (a long address wrapped)."""
    kinds = _header_fields(lines[i].strip())
    if not kinds:
        return None
    wrapped = False
    for j in range(i + 1, min(i + _HEADER_BLOCK_LINES, len(lines))):
        if "sender" in kinds and "sent" in kinds:
            break
        text = lines[j].strip()
        if not text:
            continue
        found = _header_fields(text)
        if not found:
            if wrapped:
                break
            wrapped = True
            continue
        wrapped = False
        kinds |= found
    if "sender" not in kinds or "sent" not in kinds:
        return None
    before = i - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    return before if before >= 0 and _RULE_LINE.fullmatch(lines[before].strip()) else i


def _is_intro(text: str) -> bool:
    return bool(text.endswith(":") and (_FORWARD_INTRO.fullmatch(text) or _is_attribution(text)))


def _attribution_at(lines: list[str], i: int) -> int | None:
    """Where an attribution on line i starts, when it is one. Clients wrap long ones onto
    two or three lines: Gmail after the address's "<", Apple Mail inside "w dniu 21 lis /
    2025, o godz. 03:55:", Evolution before "napisał:"; so the lines below i (when i has
    the start) and above it (when i ends in the colon) are joined to it."""
    parts = [lines[i].strip()]
    for j in range(i, min(i + 3, len(lines))):
        if j > i:
            nxt = lines[j].strip()
            if not nxt or nxt.startswith(">"):
                break
            parts.append(nxt)
        if parts[-1].endswith(":") and _is_intro(" ".join(parts)):
            return i
    if not parts[0].endswith(":"):
        return None
    parts = parts[:1]
    for k in range(i - 1, max(i - 3, -1), -1):
        above = lines[k].strip()
        if not above or above.startswith(">"):
            break
        parts.insert(0, above)
        joined = " ".join(parts)
        # the start must say it is one: a verb and a colon alone ("napisał:") are not enough
        if _is_intro(joined) and (
            _FORWARD_INTRO.fullmatch(joined) or _ATTRIBUTION_START.match(joined) or "@" in joined
        ):
            return k
    return None


def _reply_header_at(lines: list[str], i: int) -> int | None:
    """If a reply header (attribution, separator, header block) is at line i, where it
    starts (an attribution or a header block may start a line or two above)."""
    line = lines[i].strip()
    if line.startswith("-") and line.endswith("-") and _DASHED_SEPARATOR.fullmatch(line):
        return i
    found = _header_block_at(lines, i)
    return found if found is not None else _attribution_at(lines, i)


# Reply headers are looked for only in a mail's first 64 KB of text: each line looked at
# reads the few lines after it, which made 2 MB of crafted header-like lines cost seconds.
QUOTE_SEARCH_CHARS = 65_536


def split_quotes(text: str) -> tuple[str, str]:
    """(what the sender wrote, what they quoted).

    Quoted are lines starting with ">" and everything from the first reply header on:
    "W dniu ... napisał(a):", "On ... wrote:", "-----Original Message-----",
    "----- Wiadomość oryginalna -----", a header block of a sender and a date ("From:/Sent:",
    "Od:/Wysłane:", "Temat:/Od:/Data:/Do:"), in the forms real clients write them.
    """
    lines = text.split("\n")
    cut = len(lines)
    budget = QUOTE_SEARCH_CHARS
    for i, line in enumerate(lines):
        budget -= len(line) + 1
        if budget < 0:
            break  # nobody writes this much above a quote: a hostile mail's lines
        stripped = line.lstrip()
        if not stripped or stripped[0] == ">":
            continue
        if ":" not in stripped and "--" not in stripped:
            continue
        found = _reply_header_at(lines, i)
        if found is not None:
            cut = found
            break
    unquoted: list[str] = []
    quoted: list[str] = []
    for line in lines[:cut]:
        (quoted if line.lstrip().startswith(">") else unquoted).append(line)
    quoted.extend(lines[cut:])
    return _squeeze_blank_lines("\n".join(unquoted)).strip(), "\n".join(quoted).strip()


# --------------------------------------------------------------------------- parse_mail


def _split_head(data: bytes) -> bytes:
    """The header block of a message (for when the body cannot be parsed)."""
    ends = [at + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (at := data.find(sep)) >= 0]
    return data[: min(ends)] if ends else data


class _Recent:
    """Parses made at intake, kept for the decide stage of the same process.

    A request is parsed when it is read (to sort it) and again when it is decided; in one
    process the second parse of the very same bytes can be skipped. Entries are keyed by a
    digest of the raw mail and max_bytes, so what is taken is exactly what parse_mail would
    return for those bytes; each is taken once. At most ``limit`` are kept (the oldest go
    first): another process, a restart or a very large burst simply parses again."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parsed: dict[tuple[bytes, int], ParsedMail] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(raw: bytes, max_bytes: int) -> tuple[bytes, int]:
        return hashlib.blake2b(raw, digest_size=20).digest(), max_bytes

    def keep(self, raw: bytes, max_bytes: int, parsed: ParsedMail) -> None:
        key = self._key(raw, max_bytes)
        with self._lock:
            while len(self._parsed) >= self.limit:
                del self._parsed[next(iter(self._parsed))]
            self._parsed[key] = parsed

    def take(self, raw: bytes, max_bytes: int) -> ParsedMail | None:
        key = self._key(raw, max_bytes)
        with self._lock:
            return self._parsed.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._parsed.clear()


RECENT = _Recent(limit=20_000)  # ~4 KB each; a 10,000-mail opening burst fits


def parse_messages(raws: list[bytes], max_bytes: int,
                   card_pattern: str | None = None) -> list[ParsedMail | None]:
    """Each mail parsed, or None where parsing raised (run by worker processes in a
    burst, see intake/imap.py ParsedAhead). With ``card_pattern`` each parse also carries
    read_mail's answer for it, so that deciding does not search the text again."""
    out: list[ParsedMail | None] = []
    for raw in raws:
        try:
            parsed = parse_mail(raw, max_bytes=max_bytes)
        except Exception:
            out.append(None)
            continue
        if card_pattern is not None:
            try:
                parsed = replace(parsed, reading=read_mail(parsed, card_pattern))
            except Exception:  # noqa: BLE001 - deciding reads it again and sets it aside
                pass
        out.append(parsed)
    return out


def remember_parse(raw: bytes, parsed: ParsedMail, *,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Keeps ``parsed`` (of ``raw``) for parse_mail_again in this process."""
    RECENT.keep(raw, max_bytes, parsed)


def parse_mail_again(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMail:
    """parse_mail, or the parse intake kept of these very bytes (taken once)."""
    return RECENT.take(raw, max_bytes) or parse_mail(raw, max_bytes=max_bytes)


def parse_mail(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMail:
    """Parse raw RFC 5322 bytes; reads at most max_bytes of them.

    Bad mail never raises: what cannot be read is left empty (a body the stdlib parser
    gives up on, e.g. hundreds of nested multiparts, leaves text == "" but the headers).
    """
    truncated = len(raw) > max_bytes
    data = bytes(raw[:max_bytes]) if truncated or not isinstance(raw, bytes) else raw
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

    headers = Headers(msg.raw_items())
    content_type = _content_type(headers.raw("content-type"))
    text = ""
    if body_ok:
        try:
            chunks = []
            for leaf in _leaves(msg, 0, False)[:MAX_TEXT_PARTS]:
                chunk = html_to_text(leaf.body) if leaf.html else _plain(leaf.body)
                if chunk.strip():
                    chunks.append(_quote(chunk) if leaf.quoted else chunk)
            text = "\n\n".join(chunks)
        except (RecursionError, MemoryError):
            text = ""
    unquoted, quoted = split_quotes(text)

    sender = _parse_address(headers.raw("from"))
    reply_to = _parse_address(headers.raw("reply-to"))
    return ParsedMail(
        message_id=next(iter(_message_ids(headers.get("message-id"))), None),
        subject=_collapse(headers.get("subject", "")),
        from_address=(sender[1] or None) if sender else None,
        from_name=(sender[0] or None) if sender else None,
        reply_to=(reply_to[1] or None) if reply_to else None,
        return_path=_return_path(headers.raw("return-path")),
        date=_parse_date(headers.get("date")),
        in_reply_to=next(iter(_message_ids(headers.get("in-reply-to"))), None),
        references=tuple(_message_ids(headers.get("references"))),
        text=text,
        unquoted=unquoted,
        quoted=quoted,
        content_type=content_type,
        truncated=truncated,
        headers=headers,
    )


def _return_path(raw: str | None) -> str | None:
    """None when the header is absent, "" for the null reverse-path <>."""
    if raw is None:
        return None
    parsed = _parse_address(raw)
    return parsed[1] if parsed and parsed[1] not in ("", "<>") else ""


# --------------------------------------------------------------------------- folding

_FOLD_MAP = str.maketrans(
    {
        "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ð": "d", "Ð": "d",
        "ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ı": "i",
        "ħ": "h", "Ħ": "h", "þ": "th", "Þ": "th", "ŀ": "l", "Ŀ": "l",
        "’": "'", "‘": "'", "ʼ": "'", "`": "'",
    }
)  # fmt: skip
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lowercase without accents, for comparisons: "Łukasz Żółć" -> "lukasz zolc"."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.translate(_FOLD_MAP))
    return _COMBINING.sub("", text).casefold()


# --------------------------------------------------------------------------- subjects

# Cyrillic and Greek letters that look like the Latin ones in our keywords.
_LOOKALIKES = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "і": "i", "ј": "j",
        "к": "k", "м": "m", "т": "t", "у": "y", "ѕ": "s", "ӏ": "l", "ԁ": "d", "ɡ": "g",
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ӏ": "l",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ι": "i",
        "κ": "k", "ρ": "p", "ν": "v",
    }
)  # fmt: skip
_SUBJECT_PREFIX = re.compile(
    r"\s*(?:(?:re|odp|odpowied[zź]|fwd?|pd|wg|aw|sv|vs|tr|rif|antw|res|enc|doorst|wtd)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:|\[([^\]]*)\]|\(([^)]*)\))\s*",
    re.IGNORECASE,
)
_NOT_ALNUM = re.compile(r"[\W_]+")
_SERVICES = {"legimi": "legimi", "empikgo": "empik_go"}


_MAX_SUBJECT = 1000  # no request subject is longer; longer ones are not read at all


# Auto-reply and bounce phrases as subject tags, folded (lowercase, no accents): "[Auto-
# Reply]", "(Automatic reply)", "[Out of Office]", "[Automatyczna odpowiedź]", "Automatic
# reply:", "Odpowiedź automatyczna:", "Undeliverable:", "(delivery failed)". Only as a tag:
# a word in a person's sentence is not one.
_SEP = r"[\s_.\-]*"
_AUTO_PHRASE = (
    r"(?:auto(?:matic(?:ally)?|mated|matische[rn]?|matisch|matyczn[aey]|matique|matica|matico"
    r"|maattinen)?" + _SEP
    + r"(?:repl(?:y|ies|ied)|respon[sd]\w*|answer|antwort|antwoord|odpowiedz\w*|reponse"
    r"|risposta|respuesta|resposta|svar|vastaus|message|wiadomosc|mail|notice)"
    r"|(?:odpowiedz|wiadomosc|reponse|risposta|respuesta|resposta|antwort|antwoord|svar"
    r"|vastaus|odpoved)" + _SEP + r"automat\w*"
    r"|out" + _SEP + r"of" + _SEP + r"(?:the" + _SEP + r")?office|abwesen\w*"
    r"|poza" + _SEP + r"biurem|nieobecn\w*|vacation|vacances"  # not "ferie": Polish holidays
    r"|undeliver\w*|non" + _SEP + r"remis|niedostarcz\w*|unzustellbar|non" + _SEP
    + r"recapitabile|delivery" + _SEP + r"(?:has" + _SEP + r")?(?:failed|failure|status"
    r"|notification)|returned" + _SEP + r"mail|failure" + _SEP + r"notice"
    r"|mail" + _SEP + r"delivery" + _SEP + r"failed)"
)
_AUTO_TAG = re.compile(r"\s*" + _AUTO_PHRASE + r"\b")  # the inside of "[...]" or "(...)"
# A tag at the head, after the "Re:"s an auto-responder puts before it ("Re: [Auto-Reply]
# ..."), in brackets or followed by a colon; or one in brackets at the very end.
_AUTO_SUBJECT_HEAD = re.compile(
    r"(?:\s*(?:re|odp|odpowiedz|aw|sv|vs|antw|res|rif)\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*:)*\s*"
    r"(?:[\[(]\s*" + _AUTO_PHRASE + r"\b[^\[\]()]{0,80}[\])]|" + _AUTO_PHRASE + r"\s*:)"
)
_AUTO_SUBJECT_TAIL = re.compile(r"[\[(]\s*" + _AUTO_PHRASE + r"\b[^\[\]()]{0,80}[\])]\s*\Z")
# Someone forwarding an auto-reply to us wrote that mail themselves.
_FORWARD_HEAD = re.compile(r"\s*(?:fwd?|pd|wg|tr|doorst|enc|wtd|rv)\s*:")


def _subject_key(subject: str) -> str:
    """Subject reduced to lowercase letters and digits, reply/forward/tag prefixes removed."""
    if len(subject) > _MAX_SUBJECT:
        return ""
    text = unicodedata.normalize("NFKC", subject).translate(_LOOKALIKES)
    text = fold(text.translate(_INVISIBLE))
    while True:
        match = _SUBJECT_PREFIX.match(text)
        if not match or not text[match.end() :].strip():
            break  # a lone "[LEGIMI]" is the subject itself, not a tag
        tag = match.group(1) or match.group(2)
        if tag and _AUTO_TAG.match(tag):
            return ""  # "[Auto-Reply] Re: LEGIMI" is an answering machine's, never a request
        text = text[match.end() :]
    return _NOT_ALNUM.sub("", text)


def match_service(subject: str) -> str | None:
    """"legimi" or "empik_go" if the subject asks for that service and nothing else."""
    return _SERVICES.get(_subject_key(subject or ""))


def match_test_service(subject: str) -> str | None:
    """The service of a "TEST LEGIMI" / "TEST EMPIK GO" subject, same tolerance."""
    key = _subject_key(subject or "")
    return _SERVICES.get(key[4:]) if key.startswith("test") else None


def auto_subject(subject: str) -> bool:
    """The subject carries an auto-reply or bounce tag of its own software ("[Automatyczna
    odpowiedź] Re: LEGIMI", "Automatic reply: Re: LEGIMI", "Re: LEGIMI (Automatic
    Response)", Lotus Notes' "AUTO: …"), and is not someone's forward of such a mail."""
    if not subject or len(subject) > _MAX_SUBJECT:
        return False
    if subject.startswith("AUTO:"):  # Lotus Notes, always in capitals
        return True
    if "[" not in subject and "(" not in subject and ":" not in subject:
        return False  # no tag can be there ("LEGIMI"): asked of every mail, so say so fast
    text = fold(subject if subject.isascii() else subject.translate(_INVISIBLE))
    if _FORWARD_HEAD.match(text):
        return False
    return bool(_AUTO_SUBJECT_HEAD.match(text) or _AUTO_SUBJECT_TAIL.search(text))


# --------------------------------------------------------------------------- names


_NAME_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]+")


@lru_cache(maxsize=1024)
def _surname_forms(surname: str) -> tuple[str, ...]:
    """The whole surname (parts joined by one space) and, for a double-barrelled one, each
    part of three letters or more."""
    parts = [p for p in _NAME_SEPARATORS.split(fold(surname).strip(" .,;'\"")) if p]
    if not parts:
        return ()
    forms = [" ".join(parts)]
    if len(parts) > 1:
        forms.extend(p for p in parts if len(p) >= 3)
    return tuple(forms)


def _has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` with no letter or digit right before or after it."""
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not text[start - 1].isalnum()) and \
                (end == len(text) or not text[end].isalnum()):
            return True
        start = text.find(word, start + 1)
    return False


def surname_matches(text: str, surname: str) -> bool:
    """Whether the record's surname occurs in the text as a word, ignoring case and accents.

    "Nowak-Kowalska" matches "nowak kowalska", "Nowak-Kowalska", "Kowalska" or "Nowak".
    Plain string search (no regular expression per surname: in a burst every patron has
    another surname, and compiling one costs more than the rest of the check).
    """
    forms = _surname_forms(surname or "")
    if not forms:
        return False
    folded = _NAME_SEPARATORS.sub(" ", fold(text or ""))
    return any(_has_word(folded, form) for form in forms)


_NAME_LABEL = re.compile(
    r"^[ \t>*-]*(?:imi[eę][ \t]*(?:i|oraz|,|/)?[ \t]*nazwisko|nazwisko[ \t]*(?:i|,|/)?[ \t]*imi[eę]"
    r"|dane(?:[ \t]+czytelnika)?|czytelnik|full[ \t]+name|your[ \t]+name|name|patron)"
    r"[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_FIRST_LABEL = re.compile(
    r"^[ \t>*-]*(?:imi[eę]|first[ \t]+name)[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_LAST_LABEL = re.compile(
    r"^[ \t>*-]*(?:nazwisko|surname|last[ \t]+name)[ \t]*[:=\-–][ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_NAME_STOPWORDS = frozenset(
    """
    dzien dobry dobrego witam witaj witajcie pozdrawiam pozdrowienia serdecznie serdeczne
    powazaniem uprzejmie prosze prosba dziekuje dziekujemy bardzo szanowni szanowna szanowny
    panstwo pani pan best regards kind thanks thank you dear hello hi sent from my iphone
    ipad android wyslano legimi empik go biblioteka biblioteki karta karty numer nr kod kodu
    imie nazwisko czytelnik czytelnika wiadomosc od do temat data subject to cc re fwd tel
    telefon email mail ul al z w na i o dla the and with mam chcialbym chcialabym
    """.split()
)


def _clean_name(value: str) -> str | None:
    value = re.split(r"[\d,;(<\[|]|\s[-–]\s|\b(?:nr|numer|karta|tel)\b", value, maxsplit=1)[0]
    words = [w.strip(".:'\"") for w in value.split()]
    words = [w for w in words if w and all(c.isalpha() or c in "-'." for c in w)]
    if not 1 <= len(words) <= 5:
        return None
    return " ".join(words)


def _looks_like_name(line: str) -> str | None:
    words = [w.strip(".,;:!") for w in line.split()]
    if not 2 <= len(words) <= 4:
        return None
    for word in words:
        letters = word.replace("-", "").replace("'", "")
        if len(letters) < 2 or not letters.isalpha() or not word[0].isupper():
            return None
        if any(fold(p) in _NAME_STOPWORDS for p in word.split("-")):
            return None
    return " ".join(words)


_CARD_WORDS = re.compile(r"\b(?:nr|numer|karty|karta|kartę|czytelnika)\b|[:.,#-]", re.IGNORECASE)


def _labelled_name(text: str) -> str | None:
    for match in _NAME_LABEL.finditer(text):
        name = _clean_name(match.group("value"))
        if name:
            return name
    first = next((_clean_name(m.group("value")) for m in _FIRST_LABEL.finditer(text)), None)
    last = next((_clean_name(m.group("value")) for m in _LAST_LABEL.finditer(text)), None)
    if last:
        return f"{first} {last}" if first else last
    return None


def _name_by_card(text: str, card: str) -> str | None:
    """A name written before the card on its line, or a name line up to 5 lines away."""
    lines = [line.lstrip("> ").strip() for line in text.split("\n")]
    at = next((i for i, line in enumerate(lines) if card in line), None)
    if at is None:
        return None
    name = _looks_like_name(_CARD_WORDS.sub(" ", lines[at].split(card, 1)[0]))
    for distance in range(1, 6):
        for j in (at - distance, at + distance):
            if name is None and 0 <= j < len(lines):
                name = _looks_like_name(lines[j])
    return name


def read_mail(parsed: ParsedMail, pattern: str = DEFAULT_CARD_PATTERN) -> MailReading:
    """The card search for ``pattern`` and the patron's name beside the card it chose (or,
    with no card, only a labelled name or the From display name); what a parsing worker
    worked out for the same pattern is taken as it is."""
    kept = parsed.reading
    if kept is not None and kept.pattern == pattern:
        return kept
    cards = find_cards(parsed, pattern=pattern)
    return MailReading(pattern, cards, extract_name(parsed, card=cards.card))


_FIND: Any = object()  # extract_name's card: "what find_cards picks"


def extract_name(parsed: ParsedMail, *, card: str | None = _FIND) -> str | None:
    """Best-effort patron name for display: a labelled line ("Imię i nazwisko: ..."), else a
    line of 2-4 capitalised words near the card, else the From display name. The new text
    is read before the quote. ``card`` defaults to what ``find_cards`` picks (with the
    default pattern); None: no card."""
    if card is _FIND:
        card = find_cards(parsed).card
    for text in (parsed.unquoted, parsed.quoted):
        name = _labelled_name(text) or (_name_by_card(text, card) if card else None)
        if name:
            return name
    display = parsed.from_name
    if display and "@" not in display and any(c.isalpha() for c in display):
        return display
    return None


# --------------------------------------------------------------------------- cards

_CARD_LABEL = r"kart\w*|karc\w*|czytelni\w*|legitymac\w*|card\w*|barcode|kod\w* kreskow\w*"
_PHONE_LABEL = r"tel|tel\w+|phone|mobile|mob|kom|komork\w*|gsm|fax|cell"
_OTHER_LABEL = (
    r"pesel|nip|regon|iban|swift|bic|faktur\w*|zamowieni\w*|order|zip|postal|pocztow\w*"
    r"|data|date|urodzeni\w*"
)
_LABEL = re.compile(
    rf"\b(?:(?P<card>{_CARD_LABEL})|(?P<phone>{_PHONE_LABEL})|(?P<other>{_OTHER_LABEL}))\b"
)
_PHONE_PREFIX = re.compile(r"(?:\+\s*|\b00)48[\s.\-]*$|\(\s*\+?\s*48\s*\)[\s.\-]*$|\+\s*$")
_GROUPED_PHONE = re.compile(r"\d{3}([ \-])\d{3}\1\d{3}")
_DATE = re.compile(r"\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}|\d{4}[./\-]\d{1,2}[./\-]\d{1,2}")
_POSTAL = re.compile(r"\d{2}-\d{3}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,8}(?: ?[A-Z0-9]{1,3})?\b")
_LABEL_REACH = 25


@lru_cache(maxsize=32)
def _card_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![^\W_])(?:{pattern})(?![^\W_])")


def _line_before(text: str, start: int) -> tuple[str, int]:
    """Up to _LABEL_REACH characters before start on the same line, and where the line starts
    (-1 when it starts further back than that)."""
    low = max(0, start - _LABEL_REACH)
    newline = text.rfind("\n", low, start)
    if newline >= 0:
        return text[newline + 1 : start], newline + 1
    return text[low:start], (0 if low == 0 else -1)


def _label_before(text: str, start: int) -> str | None:
    """The kind of the nearest label before position start: "card", "phone" or "other".

    The label is looked for on the same line, up to _LABEL_REACH characters back; a number
    alone on its line may take a label that ends the line above ("Numer karty:").
    """
    window, line_start = _line_before(text, start)
    from_above = False
    if line_start > 0 and not window.strip(" \t>:.#-=*"):
        end = line_start - 1
        for _ in range(3):  # the line above, skipping up to two blank lines
            above, begin = _line_before(text, end)
            if above.strip(" \t>"):
                window, from_above = above, True
                break
            if begin <= 0:
                break
            end = begin - 1
    folded = fold(window)
    last = None
    for match in _LABEL.finditer(folded):
        last = match
    if last is None or (from_above and folded[last.end() :].strip(" \t:.#-=*")):
        return None
    return last.lastgroup


_NEAR = 100  # how far around a number its "word" and digit groups are looked at
_WORD_BEFORE = re.compile(r"\S*\Z")
_WORD_AFTER = re.compile(r"\S*")


def _excluded(text: str, start: int, end: int, value: str) -> bool:
    """Phone numbers, dates, postal codes, IBANs, and digits inside addresses or links."""
    before = text[max(0, start - _NEAR) : start]
    after = text[end : end + _NEAR]
    if _PHONE_PREFIX.search(before[-8:]):
        return True
    if _GROUPED_PHONE.fullmatch(value) or _DATE.fullmatch(value) or _POSTAL.fullmatch(value):
        return True
    groups = _DIGIT_GROUPS_BEFORE.search(before).group() + value
    groups = (groups + _DIGIT_GROUPS_AFTER.match(after).group()).strip("./-")
    if groups != value and (_DATE.fullmatch(groups) or _POSTAL.fullmatch(groups)):
        return True
    word = _WORD_BEFORE.search(before).group() + value + _WORD_AFTER.match(after).group()
    if "@" in word or "://" in word or word.lower().startswith("www."):
        return True
    ibans = _IBAN.finditer(text, max(0, start - _NEAR), end + _NEAR)
    return any(m.start() <= start and end <= m.end() for m in ibans)


_DIGIT_GROUPS_BEFORE = re.compile(r"[\d./-]*\Z")
_DIGIT_GROUPS_AFTER = re.compile(r"[\d./-]*")
# A mail listing more distinct numbers than this is ambiguous whatever the rest says, and
# numbers past the first MAX_CARD_MATCHES are not looked at.
MAX_CARD_CANDIDATES = 100
MAX_CARD_MATCHES = 1000


# A card number as printed, in groups of digits with single spaces or hyphens between:
# "2000 000 123", "2000-000-123", "5 901234 123457". Groups of seven or more digits are
# numbers of their own ("0012345 12" is not one number).
_DIGIT_GROUPS = re.compile(r"(?<![^\W_])\d{1,6}(?:[ -]\d{1,6})+(?![^\W_])")
_GROUP_SEPARATORS = re.compile(r"[ -]")
_MAX_GROUPED_DIGITS = 40  # no card number is longer; anything longer is not looked at
# Never a card, whatever label stands before them: phone numbers as Poles write them
# (mobile 601 234 567 or 601 23 45 67, landline 22 123 45 67, with the 48 country code),
# dates with spaces, account numbers (NRB), and a street number before a postal code
# ("Długa 12 34-567 Kraków").
_GROUPED_NOT_CARD = re.compile(
    r"(?:48[ -])?(?:\d{3}[ -]\d{3}[ -]\d{3}|\d{3}[ -]\d{2}[ -]\d{2}[ -]\d{2}"
    r"|\d{2}[ -]\d{3}[ -]\d{2}[ -]\d{2})"
    r"|\d{1,2} \d{1,2} \d{4}|\d{4} \d{1,2} \d{1,2}"
    r"|\d{2}(?: \d{4}){6}"
    r"|[\d -]* \d{2}-\d{3}"
)


def _grouped_cards(text: str, regex: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """Card numbers written in groups: (start, end, the digits joined) for each run of digit
    groups that a card label stands before ("karta 2000 000 123", "nr karty: 2000-000-123",
    as _label_before finds labels) and whose joined digits are a whole card number for
    ``regex``. Runs the pattern takes as they are written are left to it; runs
    whose every group is a card number on its own are separate numbers; phone numbers,
    dates, postal codes and account numbers are never cards."""
    found: list[tuple[int, int, str]] = []
    for run in _DIGIT_GROUPS.finditer(text):
        written = run.group()
        groups = _GROUP_SEPARATORS.split(written)
        joined = "".join(groups)
        if len(joined) > _MAX_GROUPED_DIGITS or not regex.fullmatch(joined):
            continue
        if regex.fullmatch(written) or all(regex.fullmatch(g) for g in groups):
            continue
        if _label_before(text, run.start()) != "card":
            continue
        start, end = run.span()
        if _PHONE_PREFIX.search(text[max(0, start - 8) : start]):
            continue
        if (_GROUPED_NOT_CARD.fullmatch(written) or _DATE.fullmatch(written)
                or _POSTAL.fullmatch(written)):
            continue
        ibans = _IBAN.finditer(text, max(0, start - _NEAR), end + _NEAR)
        if any(m.start() <= start and end <= m.end() for m in ibans):
            continue
        found.append((start, end, joined))
        if len(found) >= MAX_CARD_CANDIDATES:
            break
    return found


def _search(text: str, regex: re.Pattern[str]) -> tuple[list[str], list[str]]:
    """(distinct eligible candidates, distinct card-labelled ones), in order of appearance.

    A card number written in groups counts as its digits joined ("karta 2000 000 123" is
    2000000123), and the groups in it are not numbers of their own."""
    eligible: dict[str, None] = {}
    labelled: dict[str, None] = {}
    grouped = _grouped_cards(text, regex)
    at = 0  # the next grouped card to take; each goes in before the matches after it
    for seen, match in enumerate(regex.finditer(text)):
        if seen >= MAX_CARD_MATCHES:
            break
        while at < len(grouped) and grouped[at][0] <= match.start():
            if grouped[at][1] > match.start():  # this match is one of its groups
                break
            labelled[grouped[at][2]] = None
            eligible[grouped[at][2]] = None
            at += 1
        if at < len(grouped) and grouped[at][0] <= match.start() < grouped[at][1]:
            continue
        value = match.group()
        kind = _label_before(text, match.start())
        if kind == "card":
            labelled[value] = None
        elif kind is not None or _excluded(text, match.start(), match.end(), value):
            continue
        eligible[value] = None
        if len(eligible) >= MAX_CARD_CANDIDATES:
            break
    for _start, _end, value in grouped[at:]:
        if len(eligible) >= MAX_CARD_CANDIDATES:
            break
        labelled[value] = None
        eligible[value] = None
    return list(eligible), list(labelled)


def find_cards(source: ParsedMail | str, *, pattern: str = DEFAULT_CARD_PATTERN) -> CardSearch:
    """Find the patron's card number: unquoted text first, else the quote.

    One distinct labelled number ("nr karty: 0012345") wins; otherwise phone numbers,
    dates, postal codes and the like are set aside and exactly one distinct number must
    remain. Card numbers stay strings: leading zeros matter. ``pattern`` is the library's
    regex for a whole card number; a bad pattern raises ``re.error``.
    """
    if isinstance(source, ParsedMail):
        parts = (source.unquoted, source.quoted)
    else:
        parts = split_quotes(source or "")
    regex = _card_regex(pattern)
    for from_quote, text in enumerate(parts):
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)  # fullwidth digits
        eligible, labelled = _search(text, regex)
        if not eligible:
            continue
        if len(labelled) == 1:
            return CardSearch(tuple(eligible), labelled[0], bool(from_quote))
        card = eligible[0] if len(eligible) == 1 else None
        return CardSearch(tuple(eligible), card, bool(from_quote))
    return CardSearch((), None, False)


# --------------------------------------------------------------------------- loops

_LOOP_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_LOOP_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
# Fields only software writes, each its own reason: list managers (RFC 2369 and older
# ones: ezmlm, fml, Mailman), MTAs' bounce and loop markers, challenge-response systems,
# issue trackers, Hotmail's complaint reports. No mail client puts any of them on a
# person's mail. (Looked up as one set intersection: a burst asks for every mail.)
_MACHINE_HEADERS = frozenset({
    "list-subscribe", "list-help", "list-post", "list-owner", "mailing-list", "x-mlserver",
    "x-ml-name", "x-mailman-version", "x-list-administrivia", "x-beenthere", "x-loop",
    "x-failed-recipients", "x-bluebottle-request", "x-jira-fingerprint", "x-github-reason",
    "x-gitlab-project", "x-redmine-host", "x-bugzilla-reason", "x-hmxmroriginalrecipient",
})
_APPLE_AUTO = frozenset({"vacation", "autoreply", "auto-reply", "autorespond"})
_REPORT_TYPES = frozenset({
    "multipart/report", "message/delivery-status", "message/global-delivery-status",
    "message/feedback-report", "message/disposition-notification",
})
# Spelled with or without "-", "_" or ".": post_master, mailer_daemon, no.reply ...
_SEP_CHAR = r"[-_.]?"
_DAEMON_LOCAL_PART = re.compile(
    rf"(?:mailer{_SEP_CHAR}daemon|mail{_SEP_CHAR}daemon|post{_SEP_CHAR}master)\Z")
_NO_REPLY = re.compile(
    rf"no{_SEP_CHAR}reply|do{_SEP_CHAR}not{_SEP_CHAR}(?:reply|respond)"
    rf"|nie{_SEP_CHAR}odpowiadaj|nie{_SEP_CHAR}odpisuj")
# Accounts of programs, not people: cron and database jobs mail as these.
_SYSTEM_LOCAL_PARTS = frozenset({
    "root", "cron", "daemon", "nobody", "www-data", "www_data", "wwwrun", "apache", "nginx",
    "httpd", "oracle", "postgres", "mysql", "nagios", "icinga", "zabbix", "jenkins",
    "logwatch",
})


def _local_part(address: str | None) -> str:
    return (address or "").rsplit("@", 1)[0].strip().lower()


def _first_token(value: str) -> str:
    return re.split(r"[;(\s]", value.strip(), maxsplit=1)[0].lower()


def loop_reason(
    parsed: ParsedMail,
    *,
    own_addresses: Collection[str] = (),
    own_message_id_prefix: str = OWN_MESSAGE_ID_PREFIX,
    replies_to_own_are_loops: bool = False,
) -> str | None:
    """Why this mail must get no automatic reply (RFC 3834 and common practice), or None.

    Reasons: "auto-submitted", "precedence:<value>", "x-autoreply", "x-autorespond",
    "x-auto-response-suppress", "list-id", "list-unsubscribe", the name of a field only
    software writes (``_MACHINE_HEADERS``: "list-subscribe", "mailing-list", "x-mlserver",
    "x-loop", "x-failed-recipients", "x-jira-fingerprint" …), "x-apple-action" (iCloud's
    vacation reply), "empty-return-path", "mailer-daemon" (also postmaster, post_master),
    "delivery-report" (any report type: DSN, ARF complaint, read receipt),
    "no-reply-address" (noreply, gmail-noreply, do-not-reply …), "auto-reply-subject"
    (``auto_subject``), "own-address" (From, Reply-To or Sender is one of ours),
    "own-message-id", "reply-to-own-message".

    Replies *to* our own messages (In-Reply-To one of ours) are patrons answering us
    ("here is my card number") and are let through unless ``replies_to_own_are_loops``:
    an auto-responder that answers us is caught by its own headers and by the per-sender
    daily cap. Return-Path is not compared with our addresses: mail redirected between
    the library's own mailboxes carries one of them there. A report nested deeper in the
    MIME tree is found in the raw mail (``bounce.report_reason``); what only the body
    gives away is ``looks_automatic``'s (weaker: for staff).
    """
    headers = parsed.headers
    auto = headers.get("auto-submitted")
    if auto is not None and _first_token(auto) != "no":
        return "auto-submitted"
    precedence = _first_token(headers.get("precedence", ""))
    if precedence in _LOOP_PRECEDENCE:
        return f"precedence:{precedence}"
    for name in _LOOP_HEADERS:
        if name in headers:
            return name
    if "list-id" in headers:
        return "list-id"
    if "list-unsubscribe" in headers:
        return "list-unsubscribe"
    if not _MACHINE_HEADERS.isdisjoint(headers):
        return next(name for name in headers if name in _MACHINE_HEADERS)
    if "x-apple-action" in headers and _first_token(headers["x-apple-action"]) in _APPLE_AUTO:
        return "x-apple-action"  # (``in`` first: a missing field's .get raises inside)
    if parsed.return_path == "":
        return "empty-return-path"
    senders = (_local_part(parsed.from_address), _local_part(parsed.return_path))
    if any(_DAEMON_LOCAL_PART.match(local) for local in senders):
        return "mailer-daemon"
    if parsed.content_type in _REPORT_TYPES:
        return "delivery-report"
    if any(_NO_REPLY.search(local) for local in senders):
        return "no-reply-address"
    if auto_subject(parsed.subject):
        return "auto-reply-subject"
    own = _own(frozenset(own_addresses))  # a frozenset is passed through as it is
    sender_header = _parse_address(headers.get("sender"))
    addresses = (parsed.from_address, parsed.reply_to, sender_header[1] if sender_header else None)
    if own and any(a in own for a in addresses if a):
        return "own-address"
    prefix = own_message_id_prefix.lower()
    if (parsed.message_id or "").lower().startswith(prefix):
        return "own-message-id"
    if replies_to_own_are_loops and (parsed.in_reply_to or "").lower().startswith(prefix):
        return "reply-to-own-message"
    return None


# What programs write in a body: bounces of gateways that send plain text, out-of-office
# notes, challenge-response, notifications. Weaker evidence than a header (a patron may
# paste a bounce they got, or write that they are out of the office), so a request that
# reads like this is left for staff: never answered, never silenced. Our own replies
# ("This is an automatic reply to your request", "Wiadomość wysłana automatycznie…")
# match none of it: patrons answer them with the card below.
_BOUNCE_TEXT = re.compile(
    r"(?:could ?n[o']?t|can ?not|was ?n[o']?t|has not been|will not) be delivered"
    r"|undeliverable|delivery (?:to the following recipients? )?(?:has )?failed"
    r"|permanent(?:ly)? (?:fatal )?error|failed recipients?|returned mail"
    r"|delivery status notification|mail delivery (?:failed|subsystem|system)"
    r"|user unknown|mailbox (?:unavailable|is full|not found)"
)
_MACHINE_TEXT = re.compile(
    r"automat\w* (?:response|reply|answer) to your (?:message|e-?mail|mail|letter)"
    r"|(?:i am|i'm|i will be) (?:currently )?(?:out of (?:the )?office|away from)"
    r"|only notification you will receive"
    r"|jestem (?:obecnie )?(?:poza biurem|nieobecn|na urlopie)"
    r"|(?:odpowied[zź]|wiadomo[sś][cć]) (?:automatyczn|wygenerowan\w* automatycznie)"
    r"|automatyczn\w+ odpowied[zź]|wygenerowan\w+ automatycznie"
    r"|please do not reply|do not reply to this|nie odpowiadaj na t"
    r"|(?:allowed|approved|white) ?list|unsubscribe|wypisa[cć] si[eę]"
    r"|^<\?xml\b",  # a program's data, not a letter
    re.MULTILINE,
)
# Each phrase above holds one of these words: a text without any (nearly every request)
# is not searched at all. A big alternation costs ~50 us a mail; these tests ~2.
_BOUNCE_WORDS = ("deliver", "permanent", "recipient", "returned mail", "user unknown",
                 "mailbox")
_MACHINE_WORDS = ("automat", "wygenerowan", "out of", "away from", "only notification",
                  "jestem", "not reply", "odpowiadaj", "allowed", "approved", "white",
                  "unsubscribe", "wypisa", "<?xml")  # not "list": Polish "listopad"
_MACHINE_TEXT_REACH = 4000  # programs say it at the top; a long mail is not read further
# The receiving spam filter's verdict: spam, or a sender address the mail's own route
# does not back (a web form or a spammer writing in someone's name). Answering either
# sends mail to someone who did not write (backscatter).
_FORGED = re.compile(r"\bFORGED_[A-Z0-9_]+")


def looks_automatic(parsed: ParsedMail) -> str | None:
    """Why this mail reads as a program's although no header says so, or None.

    A system account as sender (root, cron, oracle …: scripts and cron jobs); a spam
    filter's "spam" or "forged sender" verdict; an auto-reply or notification phrase in
    what the sender wrote (``unquoted``); a delivery failure phrase in the text outside
    "> " quotes (plain-text bounces put the report under a dashed rule, which reads as a
    quote; a patron's reply quoting a bounce with "> " is the patron's)."""
    if _local_part(parsed.from_address) in _SYSTEM_LOCAL_PARTS:
        return "system account"
    headers = parsed.headers
    if "x-spam-flag" in headers and _first_token(headers["x-spam-flag"]) == "yes":
        return "spam filter: spam"
    if "x-spam-status" in headers:
        status = headers["x-spam-status"]
        if _first_token(status).rstrip(",") == "yes":
            return "spam filter: spam"
        if _FORGED.search(status):
            return "spam filter: forged sender"
    own = parsed.unquoted[:_MACHINE_TEXT_REACH].lower()
    if any(word in own for word in _MACHINE_WORDS):
        match = _MACHINE_TEXT.search(own)
        if match:
            return " ".join(match.group().split())
    text = parsed.text[:_MACHINE_TEXT_REACH].lower()
    if any(word in text for word in _BOUNCE_WORDS):
        for match in _BOUNCE_TEXT.finditer(text):
            if text[text.rfind("\n", 0, match.start()) + 1 : match.start() + 1][:1] != ">":
                return " ".join(match.group().split())
    return None


def _timing_sample() -> bytes:
    """A typical ~3 KB request as Gmail delivers it, for the timing below."""
    received = (
        b"Received: from mail-lf1-f41.google.com (mail-lf1-f41.google.com [209.85.167.41])\r\n"
        b"\tby mx.biblioteka.pl (Postfix) with ESMTPS id 4XYZ%d for <legimi@biblioteka.pl>;\r\n"
        b"\tSun,  1 Nov 2026 00:00:07 +0100 (CET)\r\n"
    )
    html = b'<div dir=3D"ltr"><div>Dzie=C5=84 dobry,</div><div><br></div>' + b"".join(
        b"<div>%s</div>" % line
        for line in (
            b"prosz=C4=99 o kod do Legimi na listopad.",
            b"Imi=C4=99 i nazwisko: Jan Kowalski",
            b"Numer karty: 0012345",
            b"<br>",
            b"Pozdrawiam",
            b"Jan Kowalski",
            b"tel. 600 123 456",
        )
    )
    return (
        b"Return-Path: <jan.kowalski@gmail.com>\r\nDelivered-To: legimi@biblioteka.pl\r\n"
        + b"".join(received % i for i in range(5))
        + b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=gmail.com; s=20230601;\r\n"
        b"        h=to:subject:message-id:date:from:mime-version:from:to:cc:subject;\r\n"
        b"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        + b"".join(b"        b=%s\r\n" % (b"Qk9Ha1VTa2VsZXRvbg" * 4) for _ in range(6))
        + b"X-Google-Smtp-Source: AGHT+IE" + b"x" * 120 + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"From: =?UTF-8?Q?Jan_Kowalski?= <jan.kowalski@gmail.com>\r\n"
        b"Date: Sun, 1 Nov 2026 00:00:05 +0100\r\n"
        b"Message-ID: <CAF1234567890abcdefghijklmnopqrstuvw@mail.gmail.com>\r\n"
        b"Subject: LEGIMI\r\nTo: legimi@biblioteka.pl\r\n"
        b'Content-Type: multipart/alternative; boundary="000000000000a1b2c3"\r\n\r\n'
        b"--000000000000a1b2c3\r\n"
        b'Content-Type: text/plain; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Dzie=C5=84 dobry,\r\n\r\nprosz=C4=99 o kod do Legimi na listopad.\r\n"
        b"Imi=C4=99 i nazwisko: Jan Kowalski\r\nNumer karty: 0012345\r\n\r\n"
        b"Pozdrawiam\r\nJan Kowalski\r\ntel. 600 123 456\r\n\r\n"
        b"--000000000000a1b2c3\r\n"
        b'Content-Type: text/html; charset="UTF-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + html + b"\r\n"
        b"--000000000000a1b2c3--\r\n"
    )


if __name__ == "__main__":  # rough timings: python -m mailbot.intake.parse
    import timeit

    sample = _timing_sample()

    def everything() -> None:
        parsed = parse_mail(sample)
        match_service(parsed.subject)
        loop_reason(parsed)
        extract_name(parsed, card=find_cards(parsed).card)

    runs = 2000
    for label, stmt in (
        ("stdlib BytesParser alone", lambda: _PARSER.parsebytes(sample)),
        ("parse_mail", lambda: parse_mail(sample)),
        ("parse_mail + all helpers", everything),
    ):
        best = min(timeit.repeat(stmt, number=runs, repeat=5)) / runs
        print(f"{label:26s} {best * 1e6:7.1f} us per mail ({len(sample)} bytes)")
