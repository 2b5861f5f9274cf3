"""What the two workbook formats (XLSX, legacy XLS) share: the sheet, and cell values as text.

A cell's value becomes the text a person would type for it: integral numbers without
``.0`` (card numbers and codes typed into Excel are floats), dates as ISO ``YYYY-MM-DD``,
empty cells as ``""``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from mailbot.imports.problems import ImportRefused

__all__ = ["pick_sheet", "render"]


def pick_sheet(names: list[str], wanted: str | None, *, file: str) -> str:
    """The sheet called ``wanted`` (any case), or the first; ``BadInput`` listing them."""
    if not names:
        raise ImportRefused.one("no_sheets", "the workbook has no sheets", file=file)
    if wanted is None:
        return names[0]
    for name in names:
        if name.strip().casefold() == wanted.strip().casefold():
            return name
    listed = ", ".join(repr(n) for n in names)
    raise ImportRefused.one("no_sheet", f"no sheet named {wanted!r}; the sheets are {listed}",
                            file=file, name=wanted, sheets=listed)


def render(value: object) -> str:
    """A cell value as the text a person would type for it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _render_float(value)
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral() else str(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    return str(value).strip()


def _render_float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return ""
    if value.is_integer():
        # Card numbers and codes typed into Excel become floats; 1234.0 is never meant.
        return str(int(value))
    # Excel shows 15 significant digits; binary noise beyond that (0.30000000000000004)
    # is not what anybody typed.
    return format(value, ".15g")
