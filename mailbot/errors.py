"""The small exception hierarchy of mailbot.

``BadInput`` is anything a user can cause and fix (a config key, an import row): the CLI
prints it and exits with code 2, having changed nothing.
"""

from __future__ import annotations


class MailbotError(Exception):
    """Base of every error mailbot raises on purpose."""


class BadInput(MailbotError):
    """A user-caused error, located as precisely as we can (file, row, column)."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.row = row
        self.column = column

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ConfigError(BadInput):
    """The configuration file is wrong: the message names the key."""


class SourceUnavailable(MailbotError):
    """A reader source (library system) cannot answer right now; the request waits."""
