"""How mailbot logs: one line a record, to the standard error stream of the moment.

Set up once per process: by the command line, and by the sending process a burst of
``run --once`` starts (mailbot.runonce), at the level its parent logs at.

The libraries' own INFO lines (Alembic's "Context impl SQLiteImpl", APScheduler's "Added
job …", uvicorn's "Started server process") say nothing a library's IT needs on ordinary
commands: below WARNING they are shown only with ``--verbose``. mailbot's own INFO lines
(a decision, a page of sent replies) stay.
"""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (it is replaced under test runners)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


# The libraries whose INFO lines are kept for --verbose.
QUIET_LIBRARIES = ("alembic", "apscheduler", "uvicorn", "uvicorn.error", "uvicorn.access",
                   "httpx", "msal", "google", "urllib3", "aiosmtplib", "imapclient")


def configure_logging(level: int) -> None:
    """``level`` DEBUG is ``--verbose``: the libraries' INFO lines are shown too."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[_StderrHandler()])
    for name in QUIET_LIBRARIES:
        # NOTSET hands the choice back to the root logger's level (--verbose: DEBUG).
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else
                                         max(level, logging.WARNING))
    # The format shows none of these, and a burst logs two lines a request: the logging
    # HOWTO's "Optimization" settings skip collecting them (caller frame, thread, process).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
