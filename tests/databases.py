"""Fresh databases on the machine's PostgreSQL for tests (127.0.0.1:5432, trust auth).

A test that needs PostgreSQL fails loudly when the server is down and cannot be started:
it never skips.
"""

from __future__ import annotations

import glob
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _connect():  # noqa: ANN202
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


def ensure_postgres() -> None:
    try:
        _connect().close()
        return
    except Exception:
        pass
    versions = [p.rsplit("/", 1)[1] for p in glob.glob("/etc/postgresql/*")]
    for version in versions:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",
                        "start"], check=False, capture_output=True, timeout=60)
    try:
        _connect().close()
    except Exception as exc:
        raise RuntimeError(f"PostgreSQL on 127.0.0.1:5432 is not running and could not be "
                           f"started: {exc}") from exc


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new empty database; yields its SQLAlchemy URL; dropped afterwards."""
    ensure_postgres()
    name = f"mailbot_{uuid.uuid4().hex[:12]}"
    with _connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with _connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
