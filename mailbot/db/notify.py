"""PostgreSQL LISTEN/NOTIFY between mailbot processes sharing one database.

Each daemon works alone and wakes its own threads; with several processes on one
database, work can be left to another: mail one process stored (and was then killed
before deciding it), replies one process decided (and was killed while sending). Those
processes' own timers would find it within 30 s; a notification makes the others look
at once. It is only a hint: nothing depends on it arriving, so a lost one costs time,
never a request. SQLite has a single process and no such thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)


def shared(engine: Engine) -> bool:
    """Whether other processes may be working on this database."""
    return engine.dialect.name == "postgresql"


def notify(engine: Engine, channel: str, payload: str) -> None:
    """Sends ``payload`` to every process listening on ``channel`` (this one too)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                     {"channel": channel, "payload": payload})
        conn.commit()


@contextmanager
def listening(engine: Engine, channel: str) -> Iterator[Callable[[float], list[str]]]:
    """A connection listening on ``channel``; yields ``wait(timeout)``, which returns the
    payloads that arrived within ``timeout`` seconds (at once if some are waiting).

    The connection is held for as long as the block runs and then discarded (a pooled
    connection must not keep listening for whoever takes it next)."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        # The channel is ours, not the user's: a constant quoted as an identifier.
        conn.execute(text(f'LISTEN "{channel}"'))
        driver: Any = conn.connection.driver_connection

        def wait(timeout: float) -> list[str]:
            return [n.payload for n in driver.notifies(timeout=timeout)]

        yield wait
    finally:
        conn.invalidate()
        conn.close()
