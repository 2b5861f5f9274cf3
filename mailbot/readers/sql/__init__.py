"""The `sql` reader source: ask the library system's own database who a card is.

Three concepts, one module each:

- ``source``: ``SqlReaders`` -- the engine, its timeouts, read-only lookups, and the
  failure policy (any trouble is :class:`~mailbot.errors.SourceUnavailable`, never a
  refusal).
- ``presets``: the query run -- the ``"koha"`` preset (Koha's own schema, every field
  explained) or the library's own SQL with ``:card``.
- ``columns``: one result row as :class:`~mailbot.rules.base.ReaderFacts` -- the column
  names, and their values read as dates, amounts and counts.
"""
