"""Connections that only read: on SQLite they take no write lock.

Both the sessions (db.session.reading) and the schema check at start-up (db.migrate) read
this way, so neither waits for a burst's writes nor holds them up.
"""

from __future__ import annotations

from sqlalchemy import Engine

# Execution option of connections that only read (db.session's SQLite "begin" listener
# begins them DEFERRED instead of IMMEDIATE).
READ_ONLY = "mailbot_read_only"


def read_only(engine: Engine) -> Engine:
    """The same database for connections and sessions that only read.

    On SQLite every other transaction begins IMMEDIATE, taking the one write lock, so a
    plain read (the sender's next page of replies, `status`, a dashboard page) would wait
    for a whole decide batch or stored chunk of a burst, and hold the next one up. These
    begin DEFERRED instead: a consistent snapshot, no lock. A write through them is a
    mistake (it could fail once another process has written). Elsewhere: the same engine
    options, no difference."""
    if engine.get_execution_options().get(READ_ONLY):
        return engine
    reader = engine.__dict__.get("_mailbot_read_only")
    if reader is None:  # kept on the engine: one per engine, gone with it
        reader = engine.__dict__["_mailbot_read_only"] = engine.execution_options(
            **{READ_ONLY: True})
    return reader
