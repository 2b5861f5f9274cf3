"""Reader sources behind one small interface, selected per library (``reader_source``).

A source answers ``lookup(session, library_id=..., card=...)`` with ``ReaderFacts``, None for
an unknown card, or raises ``SourceUnavailable`` when it cannot answer; the library's queue
then waits rather than refusing anybody.
"""

from __future__ import annotations

from typing import Any

from mailbot.config import LibrarySettings, Settings


def make_source(library: LibrarySettings) -> Any:
    if library.reader_source == "sql":
        from mailbot.readers.sql.source import SqlReaders

        # A library requiring confirmed accounts needs the query to say who is confirmed.
        required = frozenset({"confirmed"}) if library.require_confirmed_account else frozenset()
        return SqlReaders(library.sql, required=required)
    if library.reader_source == "sip2":
        from mailbot.readers.sip2.client import Sip2Readers

        return Sip2Readers(library.sip2)
    from mailbot.readers.local import LocalReaders

    return LocalReaders()


def make_sources(settings: Settings) -> dict[str, Any]:
    return {lib.id: make_source(lib) for lib in settings.libraries}


def close_sources(sources: dict[str, Any]) -> None:
    for source in sources.values():
        close = getattr(source, "close", None)
        if close is not None:
            close()
