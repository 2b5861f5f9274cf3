"""The problems found in one imported file, reported together as one ``BadInput``.

Interpreting a table (``readers``, ``codes``, ``activations``) collects every mistake it
finds, so that one import run reports many at once instead of one per attempt; each
problem is located by row and column, and the error is located at the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.errors import BadInput

__all__ = ["MAX_LISTED_PROBLEMS", "Problem", "Problems"]

# How many problems one error message lists; beyond that, a count is more useful.
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an imported file, located as precisely as we can."""

    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class Problems:
    """Collects problems in one file and raises them together as one ``BadInput``."""

    def __init__(self, *, file: str) -> None:
        self.file = file
        self.found: list[Problem] = []
        self.count = 0

    def add(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        # Only the listed ones are kept: a file of a million bad rows is one count.
        self.count += 1
        if len(self.found) < MAX_LISTED_PROBLEMS:
            self.found.append(Problem(message, row=row, column=column))

    def raise_if_any(self) -> None:
        """Raise one ``BadInput`` located at the first problem and listing the others."""
        if not self.found:
            return
        first = self.found[0]
        message = first.message
        if self.count > 1:
            listed = "\n".join(f"  {p}" for p in self.found)
            message = f"{message}\n{self.count} problems in this file:\n{listed}"
            if self.count > len(self.found):
                message += f"\n  … and {self.count - len(self.found)} more"
        raise BadInput(message, file=self.file, row=first.row, column=first.column)
