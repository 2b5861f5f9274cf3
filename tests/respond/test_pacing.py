"""Pacing to a relay's sending limits (pure): how many may go now, when the next slot
opens, and when the n-th waiting reply goes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbot.respond.pacing import Limits, allowance, departure, departures, next_slot

T = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_no_limits_means_everything_may_go_now() -> None:
    # An unlimited relay: no allowance to count, every reply goes now (or when a pause ends).
    assert allowance(Limits(), [T] * 1000, T) is None
    assert next_slot(Limits(), [T] * 1000, T) == T
    assert departure(Limits(), [], T, 500) == T
    assert departure(Limits(), [], T, 500, not_before=T + 60 * S) == T + 60 * S
    assert departure(Limits(), [], T, 0) is None


def test_a_minute_limit_counts_the_sliding_minute() -> None:
    # 30 a minute, 20 sent 30 s ago: 10 may go now; once 30 went, the next slot opens a
    # minute after the oldest of them.
    limits = Limits(per_minute=30)
    sent = [T - 30 * S] * 20
    assert allowance(limits, sent, T) == 10
    assert next_slot(limits, sent, T) == T
    full = sent + [T - 10 * S] * 10
    assert allowance(limits, full, T) == 0
    assert next_slot(limits, full, T) == T + 30 * S
    # A send exactly a minute ago no longer counts.
    assert allowance(limits, [T - 60 * S] * 30, T) == 30


def test_the_tightest_window_decides() -> None:
    # 30 a minute but 100 an hour: after 100 in the last hour nothing goes, however quiet
    # the last minute was; the slot opens an hour after the 100th latest.
    limits = Limits(per_minute=30, per_hour=100)
    sent = [T - timedelta(minutes=50) + i * S for i in range(100)]
    assert allowance(limits, sent, T) == 0
    assert next_slot(limits, sent, T) == sent[0] + timedelta(hours=1)
    assert allowance(Limits(per_day=2), [T - timedelta(hours=23)] * 2, T) == 0
    assert allowance(Limits(per_day=2), [T - timedelta(hours=25)] * 2, T) == 2


def test_a_burst_of_100_at_30_a_minute_goes_in_four_minutes_slots() -> None:
    # Nothing sent before: 30 now, 30 a minute later, 30 two minutes later, the last 10
    # three minutes later; the 100th goes at T + 3 min.
    limits = Limits(per_minute=30)
    times = departures(limits, [], T, 100)
    assert times[:30] == [T] * 30
    assert times[30:60] == [T + 60 * S] * 30
    assert times[90:] == [T + 180 * S] * 10
    assert departure(limits, [], T, 100) == T + 180 * S
    # ... counting what was sent already, and a pause.
    assert departure(limits, [T - 30 * S] * 30, T, 1) == T + 30 * S
    assert departure(limits, [], T, 31, not_before=T + 600 * S) == T + 660 * S


def test_a_day_limit_eta_is_the_next_day() -> None:
    # 500 a day (personal Gmail), 500 sent since 09:00 yesterday: the next one goes at
    # 09:00 today, one day after the first of them.
    limits = Limits(per_day=500)
    first = T - timedelta(hours=23)
    sent = [first + i * S for i in range(500)]
    assert departure(limits, sent, T, 1) == first + timedelta(days=1)
    assert departure(limits, sent, T, 2) == first + timedelta(days=1) + S


def test_limits_are_read_from_a_relay_settings_object() -> None:
    from mailbot.config import SmtpSettings

    limits = Limits.of(SmtpSettings(max_per_minute=30, max_per_day=10000))
    assert limits == Limits(per_minute=30, per_day=10000)
    assert limits.limited and limits.depth == 10000
    assert not Limits.of(SmtpSettings()).limited


def test_a_send_time_ahead_of_this_clock_counts_as_now():
    # Another host's clock runs a minute ahead: its sends, stamped in "the future", still
    # count, or two processes together would exceed the limit.
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    limits = Limits(per_minute=2)
    ahead = [now + timedelta(seconds=50), now + timedelta(seconds=55)]
    assert allowance(limits, ahead, now) == 0
