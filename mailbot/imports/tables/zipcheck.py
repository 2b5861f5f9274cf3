"""Refusing a hostile XLSX before openpyxl parses any of it: zip bombs and DTDs.

An XLSX is a zip of XML parts. One whose parts unpack to more than ``max_bytes``, or pack
implausibly well (a zip bomb), or carry a DTD (entities: XXE, "billion laughs") is refused
as a whole (``BadInput``, in Polish and English).
"""

from __future__ import annotations

import io
import zipfile

from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.limits import too_big

__all__ = ["MAX_PACKING_RATIO", "check_zip"]

# An XLSX part (over 1 MiB unpacked) packed better than this is a zip bomb: real
# workbooks' sheets pack 5-30 times (a 200,000-reader export: 13).
MAX_PACKING_RATIO = 100
_RATIO_FLOOR = 1024 * 1024

# "<!DOCTYPE" and "<!ENTITY" as UTF-8 (and ASCII-compatible encodings) and as UTF-16: an
# XML part may be in either.
_DTD_MARKS = tuple(mark.encode(enc) for mark in ("<!DOCTYPE", "<!ENTITY")
                   for enc in ("ascii", "utf-16-le", "utf-16-be"))
_CHUNK = 1024 * 1024


def check_zip(data: bytes, *, file: str, max_bytes: int) -> None:
    """Refuses a zip whose parts unpack to more than ``max_bytes``, pack suspiciously well,
    or hold a DTD, before any XML parser sees them.

    The sizes checked are the ones the zip declares: Python's zipfile never unpacks a part
    past its declared size (it fails the CRC check instead), so they bound what openpyxl
    can read. An XLSX never carries a DTD; one in any part can only be there to define
    entities (an external one reading a file of this machine, or nested ones expanding
    to gigabytes), so such a file is refused whatever the XML parser would make of it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ImportRefused.one("bad_zip",
                                "this looks like a zip file but not a readable XLSX workbook",
                                file=file) from exc
    with archive:
        members = archive.infolist()
        unpacked = sum(info.file_size for info in members)
        if unpacked > max_bytes:
            raise ImportRefused.in_both(too_big(unpacked, max_bytes).replace(
                "plik jest za duży (", "plik po rozpakowaniu jest za duży (").replace(
                "the file is too large (", "the file is too large unpacked ("), file=file)
        for info in members:
            if info.file_size > _RATIO_FLOOR and \
                    info.file_size > MAX_PACKING_RATIO * max(info.compress_size, 1):
                raise ImportRefused.in_both(
                    f"część {info.filename!r} po rozpakowaniu ma {info.file_size // 2**20} MiB "
                    f"(spakowana {info.compress_size // 1024} KiB): to bomba zip, a nie "
                    f"arkusz / part "
                    f"{info.filename!r} unpacks to {info.file_size // 2**20} MiB from "
                    f"{info.compress_size // 1024} KiB: a zip bomb, not a workbook; "
                    "nothing imported", file=file)
        for info in members:
            if not info.is_dir() and _holds_dtd(archive, info):
                raise ImportRefused.in_both(
                    f"część {info.filename!r} zawiera deklarację DTD lub encji (<!DOCTYPE>), "
                    f"której żaden arkusz nie ma / part {info.filename!r} declares a DTD or "
                    "entities (<!DOCTYPE>), which no workbook has; nothing imported",
                    file=file)


def _holds_dtd(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether the part contains a DTD anywhere (read in chunks: its size is bounded)."""
    overlap = max(len(mark) for mark in _DTD_MARKS) - 1
    tail = b""
    try:
        with archive.open(info) as part:
            while chunk := part.read(_CHUNK):
                window = tail + chunk
                if any(mark in window for mark in _DTD_MARKS):
                    return True
                tail = window[-overlap:]
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError,
            RuntimeError):
        return False  # a broken part: openpyxl will say the workbook is unreadable
    return False
