"""Several SMTP connections, still at most one reply sent-but-not-recorded at any moment.

`deliver` lets lanes prepare envelopes at the same time, but a reply's hand-over (DATA and
the final dot) and the commit that marks it sent happen under one lock: a crash between
the relay's "250" and the commit can repeat one reply, never two (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from mailbot.respond.deliver import deliver
from mailbot.respond.outbox import Pending
from mailbot.respond.smtp import TransportError


class Lane:
    def __init__(self, name: str, log: list[tuple[str, str, int]], *, refuse: int | None = None):
        self.name, self.log, self.refuse = name, log, refuse

    async def prepare(self, row: Pending) -> None:
        self.log.append(("prepare", self.name, row.id))
        await asyncio.sleep(0.01)  # a round trip to the relay
        self.log.append(("prepared", self.name, row.id))
        if row.id == self.refuse:
            raise TransportError("recipient refused: 550", permanent=True)

    async def finish(self, row: Pending) -> None:
        self.log.append(("hand-over", self.name, row.id))
        await asyncio.sleep(0.005)
        self.log.append(("accepted", self.name, row.id))


class Transport:
    def __init__(self, lanes: list[Lane]) -> None:
        self.lanes = lanes


def _rows(n: int) -> list[Pending]:
    now = datetime.now(UTC)
    return [Pending(i, i, "reply", "issued", "a@b.test", f"p{i}@x.test", b"x", 0, now)
            for i in range(1, n + 1)]


def test_lanes_prepare_together_but_hand_over_one_at_a_time() -> None:
    log: list[tuple[str, str, int]] = []
    recorded: list[int] = []

    def record(row: Pending, error: TransportError | None) -> None:
        log.append(("recorded", "-", row.id))
        recorded.append(row.id)

    lanes = [Lane(f"lane{k}", log) for k in range(3)]
    assert asyncio.run(deliver(Transport(lanes), _rows(12), record, lambda: False)) is None
    assert sorted(recorded) == list(range(1, 13))
    # One hand-over at a time, each accepted and recorded before the next begins, while
    # other lanes' envelopes were being prepared.
    preparing = 0
    overlapped = False
    handing_over = None
    for event, _lane, row in log:
        if event == "hand-over":
            assert handing_over is None, f"two hand-overs at once: {handing_over} and {row}"
            handing_over = row
            overlapped = overlapped or preparing > 0
        elif event == "accepted":
            assert handing_over == row
        elif event == "recorded":
            assert handing_over == row
            handing_over = None
        elif event == "prepare":
            preparing += 1
        elif event == "prepared":
            preparing -= 1
    assert overlapped


def test_a_refusal_on_one_lane_is_recorded_and_the_others_go_on() -> None:
    log: list[tuple[str, str, int]] = []
    outcomes: dict[int, str] = {}

    def record(row: Pending, error: TransportError | None) -> None:
        outcomes[row.id] = "sent" if error is None else ("failed" if error.permanent else "wait")

    lanes = [Lane("a", log, refuse=2), Lane("b", log, refuse=2)]
    asyncio.run(deliver(Transport(lanes), _rows(5), record, lambda: False))
    assert outcomes == {1: "sent", 2: "failed", 3: "sent", 4: "sent", 5: "sent"}


def test_a_page_sent_is_logged_as_one_line_with_its_outbox_ids(caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="mailbot.respond.deliver")

    def sent_lines(lanes: list[Lane], rows: list[Pending]) -> list[str]:
        caplog.clear()
        assert asyncio.run(deliver(Transport(lanes), rows, lambda r, e: None,
                                   lambda: False)) is None
        return [r.getMessage() for r in caplog.records if r.name == "mailbot.respond.deliver"]

    log: list[tuple[str, str, int]] = []
    # Row 5 may land on either lane: refused on "a", sent on "b".
    assert sent_lines([Lane("a", log, refuse=5), Lane("b", log)], _rows(8)) in (
        ["sent 7 replies (outbox 1-4, 6-8)"], ["sent 8 replies (outbox 1-8)"])
    # The ids as sorted runs, whatever order they went out in.
    rows = {row.id: row for row in _rows(12)}
    assert sent_lines([Lane("a", log)], [rows[i] for i in (9, 3, 4, 5, 12, 7)]) == [
        "sent 6 replies (outbox 3-5, 7, 9, 12)"]
    assert sent_lines([Lane("a", log)], [rows[1]]) == ["sent 1 reply (outbox 1)"]


def test_replies_are_handed_over_in_the_order_of_the_rows_whichever_lane_is_ready_first(
) -> None:
    # Lane 0's envelopes take three times as long as lane 1's (a connection to a slower
    # front end of the relay): without turns, lane 1 handed rows 2, 3, 4 over before
    # lane 0's row 1, and replies left out of arrival order.
    log: list[tuple[str, str, int]] = []
    recorded: list[int] = []

    class Slow(Lane):
        async def prepare(self, row: Pending) -> None:
            await asyncio.sleep(0.02)
            await super().prepare(row)

    lanes = [Slow("slow", log), Lane("fast", log)]
    rows = _rows(9)
    assert asyncio.run(deliver(Transport(lanes), rows, lambda row, error: recorded.append(row.id),
                               lambda: False)) is None
    assert [i for step, _, i in log if step == "hand-over"] == list(range(1, 10))
    assert recorded == list(range(1, 10))
    assert {lane for step, lane, _ in log if step == "hand-over"} == {"slow", "fast"}
