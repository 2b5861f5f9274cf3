"""Text files' bytes to text: a BOM wins, then a declared charset, then UTF-8, then cp1250.

CSV/TSV and HTML tables come in UTF-8 (with or without a BOM), UTF-16 with a BOM, or the
Windows-1250 that Excel on a Polish Windows writes when asked for "CSV".
"""

from __future__ import annotations

import codecs

from mailbot.imports.problems import ImportRefused

__all__ = ["decode_text", "strip_bom"]

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def strip_bom(data: bytes) -> tuple[bytes, str | None]:
    """``data`` without its byte-order mark, and the encoding the mark says (or None)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :], encoding
    return data, None


def decode_text(data: bytes, *, file: str, declared: str | None = None) -> str:
    """Text from bytes: a BOM wins, then a declared charset, then UTF-8, then cp1250."""
    body, bom_encoding = strip_bom(data)
    if bom_encoding:
        try:
            return body.decode(bom_encoding)
        except UnicodeDecodeError as exc:
            raise ImportRefused.one("not_encoding", f"the file is not valid {bom_encoding} text",
                                    file=file, encoding=bom_encoding) from exc
    if b"\x00" in body:
        raise ImportRefused.one("not_a_table", "this is neither a spreadsheet nor a text file",
                                file=file)
    # cp1250 decodes almost any byte string, so it must come last: it is what Excel on a
    # Polish Windows writes when asked for "CSV".
    for encoding in (declared, "utf-8", "cp1250"):
        if encoding:
            try:
                return body.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
    raise ImportRefused.one("not_utf8_cp1250", "the file is neither UTF-8 nor Windows-1250 text",
                            file=file)
