"""The problems found in one imported file, reported together as one ``BadInput``.

Interpreting a table (``readers``, ``codes``, ``activations``) collects every mistake it
finds, so that one import run reports many at once instead of one per attempt; each
problem is located by row and column, and the error is located at the first.

Each problem also carries a catalogue key and its values (``key``, ``args``): the command
line prints the English ``message`` as ever, while the dashboard words the same problem in
the reader's language (``imp_<key>`` in mailbot.web.i18n) and names its form fields, not
the command line's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailbot.errors import BadInput

__all__ = ["MAX_LISTED_PROBLEMS", "CellError", "ImportRefused", "Problem", "Problems"]

# How many problems one error message lists; beyond that, a count is more useful.
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an imported file, located as precisely as we can."""

    message: str
    row: int | None = None
    column: str | None = None
    key: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImportRefused(BadInput):
    """A ``BadInput`` from an import that also says what went wrong as catalogue keys:
    ``problems`` (the listed ones, the first being where the error is located) and
    ``count`` (all of them). ``str()`` is the English text the command line prints."""

    def __init__(self, message: str, *, problems: list[Problem], count: int | None = None,
                 file: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        super().__init__(message, file=file, row=row, column=column)
        self.problems = problems
        self.count = len(problems) if count is None else count

    @classmethod
    def one(cls, key: str, message: str, *, file: str | None = None, row: int | None = None,
            column: str | None = None, option: str | None = None,
            **args: Any) -> ImportRefused:
        """One problem: ``message`` in English, ``key`` and ``args`` for the dashboard.
        ``option``: the command-line option the problem is about, which the message
        already names (the dashboard names the form field instead)."""
        return cls(message, problems=[Problem(message, row, column or option, key, args)],
                   file=file, row=row, column=column)


    @classmethod
    def in_both(cls, message: str, *, file: str | None = None) -> ImportRefused:
        """A refusal already written in both languages, "Polish / English" (the bounds of
        a file): the dashboard shows the part in its language."""
        pl, _, en = message.partition(" / ")
        return cls.one("in_both", message, file=file, pl=pl, en=en or pl)


class CellError(ValueError):
    """A cell's value is wrong: the text is what the command line prints, ``key`` and
    ``values`` what the dashboard words in its language."""

    def __init__(self, key: str, message: str, **values: Any) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


class Problems:
    """Collects problems in one file and raises them together as one ``BadInput``."""

    def __init__(self, *, file: str) -> None:
        self.file = file
        self.found: list[Problem] = []
        self.count = 0

    def add(self, message: str, *, row: int | None = None, column: str | None = None,
            key: str | None = None, **args: Any) -> None:
        # Only the listed ones are kept: a file of a million bad rows is one count.
        self.count += 1
        if len(self.found) < MAX_LISTED_PROBLEMS:
            self.found.append(Problem(message, row=row, column=column, key=key, args=args))

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
        raise ImportRefused(message, problems=list(self.found), count=self.count,
                            file=self.file, row=first.row, column=first.column)
