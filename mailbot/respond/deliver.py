"""The delivery loop: a page of replies over a transport's lanes, one hand-over at a time.

Lanes (SMTP connections) prepare their envelopes at the same time, but a reply's hand-over
(DATA and the final dot) and the recording of it happen one at a time, in the rows' order:
the relay takes one reply at a time, in arrival order, and each is recorded before the
next is taken, so a crash can leave at most one reply sent but not marked
(docs/reliability.md). What "recording" means (a row
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
                  should_stop: Callable[[], bool]) -> TransportError | None:
    """Sends ``rows`` over the transport's lanes, calling ``record(row, error)`` for each
    (``error`` None once the relay took it); returns the error that stopped the round
    when the relay could not be reached, refused our login or asked us to slow down
    (``unreachable``: the rest of the round would fare no better), else None.

    While one lane hands its reply over and the reply is recorded, the other lanes may
    only prepare theirs (MAIL FROM, RCPT TO). When the first lane has no connection yet,
    the others wait for its first envelope: a relay that refuses our login (or is down,
    or throttles us) is asked once, not once per connection."""
    queue = deque(rows)
    sent: list[int] = []
    stopped: list[TransportError] = []
    lanes = transport.lanes[:max(1, min(len(transport.lanes), len(rows)))]
    first_envelope = asyncio.Event()
    if getattr(lanes[0], "connected", True):
        first_envelope.set()
    # Hand-overs take turns in the order the rows were taken from the queue (their
    # arrival order): a lane whose envelope was ready first waits for the earlier rows'
    # hand-overs, so replies leave in order however many connections prepare them.
    turns = asyncio.Condition()
    taken = serving = 0

    async def lane_loop(lane: Any) -> None:
        nonlocal taken, serving
        if lane is not lanes[0]:
            await first_envelope.wait()
        try:
            while queue and not stopped and not should_stop():
                row = queue.popleft()
                turn, taken = taken, taken + 1
                error = await _attempt(lane.prepare, row)
                if error is None:
                    first_envelope.set()
                async with turns:
                    await turns.wait_for(lambda: serving == turn)  # noqa: B023 - awaited here
                    try:
                        if error is None:
                            if stopped:
                                # Another lane found the relay refusing us: the round
                                # stops here, and this reply, prepared but not handed
                                # over, waits.
                                return
                            error = await _attempt(lane.finish, row)
                            if error is None:
                                sent.append(row.id)
                        record(row, error)
                        if error is not None and error.unreachable and not stopped:
                            stopped.append(error)
                    finally:
                        serving += 1
                        turns.notify_all()
                first_envelope.set()
        finally:
            first_envelope.set()

    await asyncio.gather(*(lane_loop(lane) for lane in lanes))
    if sent:
        log.info("sent %d repl%s (outbox %s)", len(sent), "y" if len(sent) == 1 else "ies",
                 _id_ranges(sent))
    return stopped[0] if stopped else None


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
