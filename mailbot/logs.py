"""How mailbot logs: one line a record, to the standard error stream of the moment.

Set up once per process: by the command line, and by the sending process a burst of
``run --once`` starts (mailbot.runonce), at the level its parent logs at.
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


def configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[_StderrHandler()])
    # The format shows none of these, and a burst logs two lines a request: the logging
    # HOWTO's "Optimization" settings skip collecting them (caller frame, thread, process).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
