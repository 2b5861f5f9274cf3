"""Work of a burst done on the machine's other cores: mail parsed while the next chunk is
read (intake/burst.py, ParsedAhead).

Parsing a fetched mail (MIME, the card number, the patron's name) is pure and costs more
than storing it; the chunks must be stored in order, but the next one need only be parsed
when it is stored, so ``submit`` hands it to a worker process meanwhile. Only with a
second CPU. The pool's processes start from a fork server (never a fork of a process
holding connections).

Replies are not composed here any more: the outbox keeps their recipes and the sender
composes them (respond/composing.py says why not on these workers).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

PARENT_CHECK = 1.0  # seconds between a child's looks at whether its parent is still there

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_started = threading.Event()  # the workers are up (start())
_starting: threading.Thread | None = None


def workers() -> int:
    """Worker processes: as many as CPUs (the process handing them work mostly waits for
    them), at most four; none on a one-CPU machine."""
    cpus = os.cpu_count() or 1
    return min(4, cpus) if cpus > 1 else 0


def pool() -> ProcessPoolExecutor | None:
    """The process-wide pool (started on first use; None on a one-CPU machine)."""
    global _pool
    with _pool_lock:
        if _pool is None and workers() > 0:
            # forkserver: workers start from a clean process (never a fork of one holding
            # database connections or threads), with the parsing code imported once.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["mailbot.intake.parse_cache"])
            _pool = ProcessPoolExecutor(max_workers=workers(), mp_context=context,
                                        initializer=end_with, initargs=(os.getpid(),))
        return _pool


def end_with(parent: int, then: Any = None) -> None:
    """In a child process: once ``parent`` (the mailbot process that started it) is gone,
    ``then()`` is called, or the child exits. A child of the fork server is not the
    parent's own: when the parent is killed (SIGKILL, the OOM killer) nothing else would
    ever end it, and the fork server lives as long as any child does."""
    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK)
            try:
                os.kill(parent, 0)
            except OSError:  # no such process (or its number now another user's)
                break
        if then is None:
            os._exit(0)
        then()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def submit(fn: Any, *args: Any) -> Future[Any] | None:
    """``fn(*args)`` on a worker (waiting for them to start); None without workers."""
    executor = started_pool(wait=True)
    if executor is None:
        return None
    try:
        return executor.submit(fn, *args)
    except Exception as exc:
        log.warning("workers unavailable (%s)", exc)
        return None


def start(*, wait: bool) -> bool:
    """Starts the workers (once): in the background, or waiting until they are up with
    ``wait``. True when they are up."""
    global _starting
    with _pool_lock:
        begin = not _started.is_set() and _starting is None
        if begin:
            _starting = threading.Thread(target=_start_workers, name="workers-start",
                                         daemon=True)
            _starting.start()
        starting = _starting
    if wait and starting is not None:
        starting.join()
    return _started.is_set()


def _start_workers() -> None:
    global _starting
    try:
        executor = pool()
        if executor is not None:
            # Each submit starts a worker (from the fork server, which is started first
            # and imports the preloaded modules): ~0.3 s in all, waited for here.
            for started in [executor.submit(os.getpid) for _ in range(workers())]:
                started.result()
            _started.set()
    except Exception as exc:  # no workers: the work is done in place
        log.warning("worker processes could not be started (%s)", exc)
    finally:
        with _pool_lock:
            _starting = None


def started_pool(*, wait: bool) -> ProcessPoolExecutor | None:
    """The pool once its workers are up. Until then, with ``wait`` the caller waits for
    them (~0.3 s, once); without, None (the caller does the work in place) while they are
    started in the background: a daemon restarted in a burst stores and decides its first
    mail meanwhile."""
    if not _started.is_set():
        start(wait=wait)
    return _pool if _started.is_set() else None


def shutdown() -> None:
    global _pool
    with _pool_lock:
        starting = _starting
    if starting is not None:
        starting.join()
    with _pool_lock:
        _started.clear()
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
