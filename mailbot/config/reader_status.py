"""The rule between keys for confirmed accounts: which reader sources can say that an
account was never confirmed at the desk (issue 20).

Kept apart from ``mailbot.config.load`` (the file reading and its other key rules): it is
one policy's knowledge of the sources -- SIP2 cannot tell, Koha's preset only through the
patron categories of self-registered accounts, a reader file and a library's own query
can -- and it grows with the sources, not with the file format.
"""

from __future__ import annotations

from mailbot.config.sections import LibrarySettings
from mailbot.errors import ConfigError

__all__ = ["check_confirmed_accounts"]


def check_confirmed_accounts(lib: LibrarySettings, src: str, key: str) -> None:
    """``require_confirmed_account`` needs a source that can say "not confirmed": a rule
    that can never refuse would hand codes to the very accounts the library excludes."""
    koha = lib.reader_source == "sql" and lib.sql.query.strip().lower() == "koha"
    if lib.sql.unconfirmed_categories and not koha:
        raise ConfigError("is read by the koha preset only (a reader_source = \"sql\" with "
                          "query = \"koha\"); an own query returns the column confirmed",
                          file=src, column=f"{key}.sql.unconfirmed_categories")
    for category in lib.sql.unconfirmed_categories:
        if not category.strip() or "," in category:
            raise ConfigError(f"{category!r} is not a Koha patron category code", file=src,
                              column=f"{key}.sql.unconfirmed_categories")
    if not lib.require_confirmed_account:
        return
    if lib.reader_source == "sip2":
        # SIP2 patron information has no "confirmed at the desk" flag.
        raise ConfigError("cannot be answered by a sip2 reader source", file=src,
                          column=f"{key}.require_confirmed_account")
    if koha and not lib.sql.unconfirmed_categories:
        raise ConfigError(
            "is needed by require_confirmed_account with the koha preset: Koha has no "
            "\"confirmed at the desk\" flag; name the patron categories of accounts "
            "registered online and not yet confirmed (PatronSelfRegistrationDefaultCategory, "
            "e.g. [\"SELFREG\"]), or give your own query returning the column confirmed",
            file=src, column=f"{key}.sql.unconfirmed_categories")
