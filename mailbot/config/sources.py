"""``[libraries.sql]`` and ``[libraries.sip2]``: where a library's readers are checked when
its ``reader_source`` is not the imported file (mailbot.readers.sql, mailbot.readers.sip2).
Part of the settings (mailbot.config.sections), one table each."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailbot.config.checks import CLOSED, Bool, Float, Int, Str


@dataclass(frozen=True)
class SqlSourceSettings:
    """``reader_source = "sql"``: read-only access to the library system's database."""

    url: Str | None = field(default=None, repr=False)  # SQLAlchemy URL (may hold a password)
    url_env: Str | None = None  # or: read the URL from this environment variable
    # A query with a bound :card parameter returning the reader's columns (see
    # mailbot/readers/sql/presets.py), or a preset name: "koha".
    query: Str = "koha"
    timeout: Float = 10.0
    # The koha preset: the patron categories of accounts created online and not yet
    # confirmed at the desk (Koha's PatronSelfRegistrationDefaultCategory, e.g. ["SELFREG"]):
    # their `confirmed` is false, everyone else's true. Empty: Koha cannot tell (None).
    unconfirmed_categories: tuple[Str, ...] = ()

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class Sip2SourceSettings:
    """``reader_source = "sip2"``: the library system's SIP2 server."""

    host: Str = "localhost"
    port: Int = 6001
    tls: Bool = False
    ca_file: Str | None = None  # verify the server against this CA (default: system CAs)
    username: Str | None = None  # SIP2 login (93); none: no login message
    password: Str | None = field(default=None, repr=False)
    password_env: Str | None = None
    location_code: Str = ""
    institution_id: Str = ""
    terminal_password: Str | None = field(default=None, repr=False)
    timeout: Float = 10.0
    retries: Int = 2

    __pydantic_config__ = CLOSED
