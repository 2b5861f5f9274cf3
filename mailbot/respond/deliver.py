"""The delivery loop: a page of replies over a transport's lanes, one hand-over at a time.

Lanes (SMTP connections) prepare their envelopes at the same time, but a reply's hand-over
(DATA and the final dot) and the recording of it happen under one lock: the relay takes one
reply at a time and each is recorded before the next is taken, so a crash can leave at
most one reply sent but not marked (docs/reliability.md). What "recording" means (a row
marked sent, failed or deferred) is the caller's (outbox.py); what a lane does on the
wire is the transport's (smtp.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mailbot.respond.smtp import Outgoing, Transport, TransportError, unexpected

log = logging.getLogger(__name__)

Row = TypeVar("Row", bound=Outgoing)


async def deliver(transport: Transport, rows: Sequence[Row],
                  record: Callable[[Row, TransportError | None], None],
                  should_stop: Callable[[], bool]) -> bool:
    """Sends ``rows`` over the transport's lanes, calling ``record(row, error)`` for each
    (``error`` None once the relay took it); True if the relay could not be reached.

    While one lane hands its reply over and the reply is recorded, the other lanes may
    only prepare theirs (MAIL FROM, RCPT TO)."""
    queue = deque(rows)
    sent: list[int] = []
    handing_over = asyncio.Lock()
    unreachable = False

    async def lane_loop(lane: Any) -> None:
        nonlocal unreachable
        while queue and not unreachable and not should_stop():
            row = queue.popleft()
            error = await _attempt(lane.prepare, row)
            if error is None:
                async with handing_over:
                    if unreachable:
                        # Another lane found the relay refusing us: the round stops here,
                        # and this reply, prepared but not handed over, simply waits.
                        return
                    error = await _attempt(lane.finish, row)
                    record(row, error)
                    if error is None:
                        sent.append(row.id)
            else:
                record(row, error)
            if error is not None and error.unreachable:
                unreachable = True

    lanes = transport.lanes[:max(1, min(len(transport.lanes), len(rows)))]
    await asyncio.gather(*(lane_loop(lane) for lane in lanes))
    if sent:
        log.info("sent %d repl%s (outbox %s)", len(sent), "y" if len(sent) == 1 else "ies",
                 _id_ranges(sent))
    return unreachable


def _id_ranges(ids: list[int]) -> str:
    """``3-7, 9, 12-13``: the ids, sorted, as runs."""
    ids = sorted(ids)
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


async def _attempt(step: Callable[[Row], Awaitable[None]], row: Row) -> TransportError | None:
    try:
        await step(row)
    except TransportError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one reply must never stop the others
        return unexpected(exc)
    return None
