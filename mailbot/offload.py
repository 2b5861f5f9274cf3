"""Work of a burst done on the machine's other cores: replies composed while the batch is
decided, and mail parsed while the next chunk is read (intake/burst.py, ParsedAhead).

Composing a reply (templates, wrapping, MIME) is pure and is the largest single part of
deciding one request (~0.2 ms). Deciding itself must stay in order in one process (the
pool of codes, the counters), but the replies need only be ready when the batch is
written: ``Composer`` hands them, 16 at a time, to worker processes and collects them at
the end of the batch. The messages are byte for byte what composing in place gives (the
same function, the same inputs). A reply that cannot be composed fails only its own
request, exactly as in place; if the workers themselves are lost, the replies are
composed in place.

Only a full batch (a burst) is worth it, and only with a second CPU. The pool's
processes start from a fork server (never a fork of a process holding connections).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

PARENT_CHECK = 1.0  # seconds between a child's looks at whether its parent is still there
CHUNK = 16  # replies a worker composes per task: the hand-over costs less than composing
OFFLOAD_MIN = 200  # a batch this big is a burst (mailbot.decide.sizes.BATCH_SIZE)

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_started = threading.Event()  # the workers are up (start())
_starting: threading.Thread | None = None


def workers() -> int:
    """Worker processes: as many as CPUs (the deciding process mostly waits for them at
    the end of a batch), at most four; none on a one-CPU machine."""
    cpus = os.cpu_count() or 1
    return min(4, cpus) if cpus > 1 else 0


def pool() -> ProcessPoolExecutor | None:
    """The process-wide pool (started on first use; None on a one-CPU machine)."""
    global _pool
    with _pool_lock:
        if _pool is None and workers() > 0:
            # forkserver: workers start from a clean process (never a fork of one holding
            # database connections or threads), with the composing code imported once.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["mailbot.respond.compose",
                                            "mailbot.intake.parse_cache"])
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


def composer(*, replies: int, burst: bool, wait: bool) -> Composer | None:
    """A Composer for a decide batch of ``replies`` requests, if the workers are worth it
    (a burst, or a batch as big as a burst's) and up; None: compose in place. ``wait``:
    wait for the workers to start (~0.3 s, once) rather than compose in place meanwhile."""
    if not burst and replies < OFFLOAD_MIN:
        return None
    executor = started_pool(wait=wait)
    return Composer(executor) if executor is not None else None


class ComposeFailed(Exception):
    """The reply for ``key`` could not be composed (``trace`` says why)."""

    def __init__(self, key: Any, trace: str) -> None:
        super().__init__(key)
        self.key, self.trace = key, trace


def compose_messages(jobs: list[dict[str, Any]]) -> list[bytes | str]:
    """In a worker: each job's message, or the traceback of its failure."""
    # Imported here (the fork server preloads it for the workers): intake imports this
    # module, and a restarted daemon's first stored mail must not wait for the templates.
    from mailbot.respond.compose import compose_reply

    out: list[bytes | str] = []
    for job in jobs:
        try:
            out.append(compose_reply(**job).message)
        except Exception:
            out.append(traceback.format_exc(limit=5))
    return out


class Composer:
    """One batch's replies: ``add`` as they are decided, ``finish`` before writing."""

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self.executor = executor
        self.rows: list[tuple[Any, dict[str, Any]]] = []  # (key, outbox row) waiting
        self.jobs: list[dict[str, Any]] = []
        self.sent: list[tuple[list[tuple[Any, dict[str, Any]]], list[dict[str, Any]],
                              Future[list[bytes | str]] | None]] = []

    def add(self, key: Any, row: dict[str, Any], job: dict[str, Any]) -> None:
        """``row["message"]`` is filled by ``finish`` with compose_reply(**job)."""
        self.rows.append((key, row))
        self.jobs.append(job)
        if len(self.jobs) >= CHUNK:
            self._submit()

    def _submit(self) -> None:
        if not self.jobs:
            return
        try:
            future: Future[list[bytes | str]] | None = self.executor.submit(
                compose_messages, self.jobs)
        except Exception as exc:  # the pool is broken or shut down: compose in place
            log.warning("reply workers unavailable (%s); composing in place", exc)
            future = None
        self.sent.append((self.rows, self.jobs, future))
        self.rows, self.jobs = [], []

    def finish(self) -> None:
        """Fills in every message; raises ComposeFailed for the first reply that failed."""
        self._submit()
        for rows, jobs, future in self.sent:
            results: list[bytes | str] | None = None
            if future is not None and future.cancel():
                future = None  # not started (the workers are still starting): in place
            if future is not None:
                try:
                    results = future.result()
                except Exception as exc:  # lost workers, not a bad reply
                    log.warning("reply workers failed (%s); composing in place",
                                type(exc).__name__)
            if results is None:
                results = compose_messages(jobs)
            for (key, row), result in zip(rows, results):
                if isinstance(result, str):
                    raise ComposeFailed(key, result)
                row["message"] = result
        self.sent = []
