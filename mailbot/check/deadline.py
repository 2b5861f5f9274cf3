"""Runs the checks, a few at a time, each with its own time limit.

Each check runs in a daemon thread. One whose server accepted the connection and then went
silent fails when its ``timeout`` has passed, and the command goes on without it (the
thread is left to its socket timeout; being a daemon thread, it never holds the exit).
Results come back in the order of the checks, each as soon as it and those before it are
known, so that a long check list prints as it goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from mailbot.check.items import FAIL, OK, SKIP, Check, Failed, Result, Skipped
from mailbot.login.failures import AuthFailure

PARALLEL = 8  # checks at a time: a consortium has hundreds of mailboxes


def outcome(check: Check, scrub: Callable[[str], str] = str) -> Result:
    """Runs one check in this thread: its Result, whatever it raises."""
    try:
        return Result(OK, check.item, scrub(check.run()))
    except Skipped as exc:
        return Result(SKIP, check.item, scrub(str(exc)))
    except Failed as exc:
        return Result(FAIL, check.item, scrub(str(exc)))
    except AuthFailure as exc:
        # Its text names the mailbox or relay again; the line already does.
        text = str(exc)
        prefix = f"{exc.who}: "
        return Result(FAIL, check.item, scrub(text[len(prefix):] if text.startswith(prefix)
                                              else text))
    except Exception as exc:  # noqa: BLE001 - whatever breaks, it is this item's failure
        return Result(FAIL, check.item, scrub(f"{type(exc).__name__}: {exc}"[:500]))


def run_all(checks: Sequence[Check], *, scrub: Callable[[str], str] = str,
            parallel: int = PARALLEL) -> Iterator[Result]:
    results: list[Result | None] = [None] * len(checks)
    running: dict[int, float] = {}  # index -> deadline (monotonic)
    done = threading.Condition()

    def work(i: int) -> None:
        result = outcome(checks[i], scrub)
        with done:
            if results[i] is None:  # not given up on meanwhile
                results[i] = result
            running.pop(i, None)
            done.notify_all()

    started = given = 0
    while given < len(checks):
        with done:
            while started < len(checks) and len(running) < parallel:
                running[started] = time.monotonic() + checks[started].timeout
                threading.Thread(target=work, args=(started,), daemon=True,
                                 name=f"check-{started}").start()
                started += 1
            now = time.monotonic()
            for i, deadline in list(running.items()):
                if deadline <= now:
                    c = checks[i]
                    results[i] = Result(FAIL, c.item, f"no answer within {c.timeout:g} s")
                    del running[i]
            ready = []
            while given < len(checks) and results[given] is not None:
                ready.append(results[given])
                given += 1
            if not ready and running:
                done.wait(timeout=max(0.0, min(running.values()) - now))
        yield from (r for r in ready if r is not None)
