"""Reading CSV/TSV text as raw rows: the delimiter sniffed, the lines streamed."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator

from mailbot.imports.problems import ImportRefused
from mailbot.imports.tables.table import RawRow

__all__ = ["csv_rows"]

_DELIMITERS = (",", ";", "\t")
_SNIFF_RECORDS = 50
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def csv_rows(text: str, *, file: str) -> Iterator[RawRow]:
    delimiter = _sniff_delimiter(text)
    try:
        for number, cells in enumerate(csv.reader(_lines(text), delimiter=delimiter), 1):
            yield number, cells
    except csv.Error as exc:
        raise ImportRefused.one("unreadable", f"this CSV file cannot be read: {exc}",
                                file=file, format="CSV", reason=str(exc)) from exc


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time, as csv.reader wants them.

    Not io.StringIO: that copies the whole text (at up to four bytes a character) first.
    Lines end as with ``newline=""``: at "\r\n", "\n" or a lone "\r" (old Mac exports),
    kept for csv.reader, which reads them as line ends or parts of a quoted field."""
    for found in _LINE.finditer(text):
        yield found.group()


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits most rows into the same number of (several) fields.

    A Polish CSV uses ``;`` because ``,`` is the decimal separator, so "12,50" must not
    make ``,`` win: a real delimiter gives the same field count on most rows.
    """

    def score(delimiter: str) -> tuple[int, int, int]:
        # Last resort for one-column files: the delimiter that occurs at all (";;" rows).
        occurs = text.count(delimiter, 0, 10_000)
        try:
            sample = itertools.islice(
                csv.reader(_lines(text), delimiter=delimiter), _SNIFF_RECORDS
            )
            wide = [len(record) for record in sample if len(record) > 1]
        except csv.Error:
            return (0, 0, occurs)
        if not wide:
            return (0, 0, occurs)
        common = max(set(wide), key=lambda count: (wide.count(count), count))
        return (wide.count(common), common, occurs)

    return max(_DELIMITERS, key=score)
