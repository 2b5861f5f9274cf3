"""Bytes to text whatever the label says: declared, wrong, missing or unknown.

Hand-written on purpose: decoding with the declared label, as the stdlib does, is wrong on
Polish mail as it arrives. Measured on "Dzień dobry, proszę o kod. Zażółć gęślą jaźń":
UTF-8 labelled us-ascii or iso-8859-1 comes out as "Dzie�� dobry" / "DzieÅ dobry",
and unlabelled iso-8859-2 as "Dzie� dobry"; ``decode_bytes`` gives the text in all three.
Valid UTF-8 wins over a single-byte label, and 8-bit bytes that are not UTF-8 are read as
cp1250 or iso-8859-2, whichever fits the Polish letters better.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

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
