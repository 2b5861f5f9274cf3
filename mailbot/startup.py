"""A command's start-up without the cyclic garbage collector.

Importing SQLAlchemy, the models and pydantic creates some hundred thousand objects that
live as long as the process; the collector, run every 700 new objects, walks them again
and again for nothing: 50-70 ms of a `mailbot status` that takes 0.6 s (measured on the
two-core development machine, ``python -c "import sqlalchemy.orm, mailbot.db.models,
pydantic"``: 0.40-0.52 s with the collector, 0.35-0.45 s without). So the command line
turns it off until the database is open (``begin``), then moves everything made so far out
of its reach for good and turns it on again (``done``: ``gc.freeze``, as the gc
documentation suggests for objects that stay), for the rest of the command: a daemon runs
for months with the collector on, as always, and scans less. Frozen only once a process:
a process that runs several commands (the test suite calls ``mailbot.cli.main`` again and
again) would otherwise freeze each time whatever cyclic garbage it had made meanwhile.
"""

from __future__ import annotations

import gc

_frozen = False


def begin() -> None:
    gc.disable()


def done() -> None:
    """Idempotent; called once the database is open, and at the latest when the command
    ends."""
    global _frozen
    if not gc.isenabled():
        if not _frozen:
            gc.freeze()
            _frozen = True
        gc.enable()
