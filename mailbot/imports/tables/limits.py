"""The bounds of one imported file, and the refusals that name them.

Files come from staff's uploads, so they may be hostile or simply huge: rows are counted as
they stream and a file is refused as a whole (``BadInput`` naming the bound, in Polish and
English) past ``max_rows`` rows, ``MAX_CELLS`` cells or ``max_bytes`` bytes (an XLSX's
parts unpacked, see ``zipcheck``). ``max_rows`` and ``max_bytes`` are the config's
``[imports]`` (see mailbot.config.ImportSettings); these are their defaults.
"""

from __future__ import annotations

from mailbot.config.sections import ImportSettings
from mailbot.errors import BadInput
from mailbot.imports.problems import ImportRefused

__all__ = ["MAX_BYTES", "MAX_CELLS", "MAX_ROWS", "Limit", "too_big"]

MAX_ROWS = ImportSettings.max_rows
MAX_BYTES = ImportSettings.max_bytes
# Rows × columns of the table as read: every row is padded to the widest, so one stray
# cell far to the right would otherwise multiply the memory of every row. A 200,000-reader
# export of ten columns is 2,000,000; at the bound a file takes ~350 MB while it is read
# (10,000,000 took 900 MB, in the daemon's process when imported on the dashboard).
MAX_CELLS = 4_000_000


class Limit:
    """The bound on rows and cells of one file, checked as its rows stream in."""

    def __init__(self, file: str, max_rows: int) -> None:
        self.file = file
        self.max_rows = max_rows

    def too_many_rows(self) -> BadInput:
        n = f"{self.max_rows:,}"
        return ImportRefused.in_both(
            f"plik ma więcej niż {n.replace(',', ' ')} wierszy, a jeden import przyjmuje "
            f"najwyżej tyle ([imports] max_rows); proszę podzielić go na mniejsze pliki / "
            f"the file has "
            f"more than {n} rows, the most one import takes ([imports] max_rows); split it "
            "into smaller files; nothing imported", file=self.file)

    def too_many_cells(self, rows: int, width: int) -> BadInput:
        n = f"{MAX_CELLS:,}"
        return ImportRefused.in_both(
            f"plik ma zbyt wiele komórek ({rows} wierszy × {width} kolumn, najwyżej "
            f"{n.replace(',', ' ')}); proszę usunąć zbędne kolumny / the file has too many cells "
            f"({rows} rows × {width} columns, at most {n}); remove the columns not needed; "
            "nothing imported", file=self.file)


def too_big(size: int, max_bytes: int) -> str:
    """The refusal of a file of ``size`` bytes, over ``max_bytes``."""
    mib = f"{max_bytes / 2**20:.0f}"
    return (f"plik jest za duży ({size / 2**20:.1f} MiB, najwyżej {mib} MiB, [imports] "
            f"max_bytes) / the file is too large ({size / 2**20:.1f} MiB, at most {mib} MiB, "
            "[imports] max_bytes); nothing imported")
