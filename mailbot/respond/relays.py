"""Relays: which sending account each reply leaves through, each account's health and
pauses (the ``relays`` table), and its queue (how many wait, when the last will go out).

A reply (or reminder) leaves through the relay of the mailbox it is sent from
(``Settings.relay_for(library_id, mail_from)``): a reply ``From: ebooki@library-a.pl``
must leave through library A's own account, or SPF, DKIM and DMARC alignment fail. Relays
are identified by ``SmtpSettings.key``; mailboxes whose relays are one account share its
key, its limits and its health.

The health lives in the database, not in a process, so that every process (the daemon, a
``run --once`` from cron, ``mailbot status``, the dashboard) sees the same pause: after a
throttling answer the relay waits 1, 2, 4 … minutes (at most 30), after an authentication
failure ``daemon.auth_retry`` doubling up to ``auth_retry_max``; a success ends the pause.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import as_aware
from mailbot.config import DaemonSettings, Settings, SmtpSettings
from mailbot.db.models import Outbox, Relay
from mailbot.db.session import reading
from mailbot.login import fingerprint
from mailbot.login.failures import login_wait
from mailbot.outcomes import OutboxState
from mailbot.respond import pacing

if TYPE_CHECKING:
    from mailbot.respond.smtp import Transport

THROTTLE_FIRST = 60.0  # seconds: the first pause after a throttling answer
THROTTLE_MAX = 1800.0  # ... doubling up to this
# PostgreSQL advisory lock class (two-integer form) of a limited relay's allowance: the
# process that holds it is the only one sending through that relay (respond/outbox.py).
RELAY_LOCKS = 0x6D72  # "mr"


def lock_id(key: str) -> int:
    """The relay's advisory lock id (a signed 32-bit integer derived from its key)."""
    value = zlib.crc32(key.encode("utf-8"))
    return value - (1 << 32) if value >= 1 << 31 else value


# -- health ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayState:
    """A relay's row in the ``relays`` table (all None/0 for a relay never in trouble)."""

    key: str
    last_error: str | None = None
    down_since: datetime | None = None
    paused_until: datetime | None = None
    pause_reason: str | None = None  # "auth" | "throttled"
    failures: int = 0
    last_ok_at: datetime | None = None
    refused_for: str | None = None  # an "auth" pause: the credentials refused

    def paused(self, now: datetime, relay: SmtpSettings | None = None) -> bool:
        """Whether nothing may be sent through it now. An "auth" pause ends as soon as the
        relay's credentials (``relay``, as configured now) are not the ones refused."""
        if self.paused_until is None or self.paused_until <= now:
            return False
        return not (relay is not None and self.pause_reason == "auth"
                    and self.refused_for not in (None, fingerprint.credentials(relay)))

    @property
    def troubled(self) -> bool:
        """Something for a success to clear."""
        return bool(self.last_error or self.down_since or self.paused_until
                    or self.pause_reason or self.failures)


_STATE = (Relay.key, Relay.last_error, Relay.down_since, Relay.paused_until,
          Relay.pause_reason, Relay.failures, Relay.last_ok_at, Relay.refused_for)


def _state(row: object) -> RelayState:
    key, error, down, paused, reason, failures, ok, refused = row  # type: ignore[misc]
    aware = lambda t: as_aware(t) if t is not None else None  # noqa: E731
    return RelayState(key, error, aware(down), aware(paused), reason, failures or 0, aware(ok),
                      refused)


def read_states(conn: Connection | Session, keys: Iterable[str] | None = None
                ) -> dict[str, RelayState]:
    stmt = select(*_STATE)
    if keys is not None:
        stmt = stmt.where(Relay.key.in_(list(keys)))
    return {row[0]: _state(row) for row in conn.execute(stmt)}


def _ensure(conn: Connection, key: str) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    conn.execute(insert(Relay).values(key=key, failures=0).on_conflict_do_nothing())


def record_ok(conn: Connection, key: str, now: datetime, *, troubled: bool) -> None:
    """The relay took a reply: any pause or error is over (``troubled``: the state read
    before the round had something to clear; else only last_ok_at is written)."""
    _ensure(conn, key)
    values: dict[str, object] = {"last_ok_at": now}
    if troubled:
        values.update(last_error=None, down_since=None, paused_until=None,
                      pause_reason=None, failures=0, refused_for=None)
    conn.execute(update(Relay).where(Relay.key == key).values(**values))


def record_down(conn: Connection, key: str, error: str, now: datetime) -> None:
    """The relay could not be reached (or refused us): noted for staff, no pause (the
    sender's own back-off applies)."""
    _ensure(conn, key)
    conn.execute(update(Relay).where(Relay.key == key).values(
        last_error=error[:1000], down_since=func.coalesce(Relay.down_since, now)))


def pause_for(reason: str, failures: int, daemon: DaemonSettings) -> timedelta:
    """The pause after the ``failures``-th failure of that kind in a row (1-based)."""
    if reason == "auth":
        return timedelta(seconds=login_wait(failures, daemon))
    return timedelta(seconds=min(THROTTLE_MAX, THROTTLE_FIRST * 2 ** max(0, failures - 1)))


def record_pause(conn: Connection, key: str, reason: str, error: str, now: datetime,
                 daemon: DaemonSettings, *, refused_for: str | None = None) -> RelayState:
    """Pauses the relay after a throttling answer (``reason="throttled"``) or an
    authentication failure (``"auth"``, with the fingerprint of the credentials refused),
    for longer with each one in a row; returns the new state. ``error`` is shown to staff:
    never a secret in it (AuthFailure's text)."""
    _ensure(conn, key)
    old = read_states(conn, [key]).get(key, RelayState(key))
    same = old.pause_reason == reason and (reason != "auth" or old.refused_for in (
        None, refused_for))
    failures = old.failures + 1 if same else 1
    until = now + pause_for(reason, failures, daemon)
    conn.execute(update(Relay).where(Relay.key == key).values(
        last_error=error[:1000], paused_until=until, pause_reason=reason, failures=failures,
        down_since=old.down_since or now, refused_for=refused_for))
    return RelayState(key, error[:1000], old.down_since or now, until, reason, failures,
                      old.last_ok_at, refused_for)


# -- limits ---------------------------------------------------------------------------


def recent_sends(conn: Connection | Session, key: str, now: datetime, depth: int
                 ) -> list[datetime]:
    """The latest ``depth`` send times of the relay within the last day, oldest first
    (only these matter to its limits: pacing.py)."""
    if depth <= 0:
        return []
    rows = conn.execute(
        select(Outbox.sent_at).where(Outbox.relay == key, Outbox.sent_at > now - pacing.DAY)
        .order_by(Outbox.sent_at.desc()).limit(depth)).scalars().all()
    return sorted(as_aware(t) for t in rows if t is not None)


# -- the queue, for `mailbot status` and the dashboard ---------------------------------


@dataclass(frozen=True)
class RelayQueue:
    """One sending account's queue and health, as of ``now``.

    ``waiting``: pending replies due now (retries included); ``later``: pending, due
    later (a reply decided outside the sending hours). ``next_slot``: when the limits let
    the next reply go (``now`` if one may go now and the relay is not paused);
    ``last_at``: when the last waiting reply will go out, counting the limits and the
    pause (None when none waits; the relay's own speed is not counted)."""

    key: str
    relay: SmtpSettings
    waiting: int
    later: int
    sent_last_day: int
    limits: pacing.Limits
    next_slot: datetime
    last_at: datetime | None
    paused_until: datetime | None
    pause_reason: str | None
    last_error: str | None
    down_since: datetime | None
    last_ok_at: datetime | None


def queue_by_relay(sessions: sessionmaker[Session], settings: Settings, now: datetime
                   ) -> list[RelayQueue]:
    """Every configured relay (settings.relays' order: the global one first, when a
    mailbox uses it), with its queue and health."""
    relays = dict(settings.relays)
    waiting = dict.fromkeys(relays, 0)
    later = dict.fromkeys(relays, 0)
    with reading(sessions) as session:
        due_now = func.sum(case((Outbox.due_at <= now, 1), else_=0))
        for library_id, mail_from, due, count in session.execute(
                select(Outbox.library_id, Outbox.mail_from, due_now, func.count())
                .where(Outbox.state == OutboxState.PENDING)
                .group_by(Outbox.library_id, Outbox.mail_from)):
            relay = settings.relay_for(library_id, mail_from)
            # (A row from an address no mailbox has any more goes through the global
            # relay, which settings.relays leaves out when every mailbox has its own.)
            relays.setdefault(relay.key, relay)
            waiting[relay.key] = waiting.get(relay.key, 0) + int(due or 0)
            later[relay.key] = later.get(relay.key, 0) + count - int(due or 0)
        sent = dict(session.execute(
            select(Outbox.relay, func.count()).where(Outbox.relay.in_(list(relays)),
                                                     Outbox.sent_at > now - pacing.DAY)
            .group_by(Outbox.relay)).all())
        states = read_states(session, relays)
        recent = {key: recent_sends(session, key, now, pacing.Limits.of(relay).depth)
                  for key, relay in relays.items()}
    found = []
    for key, relay in relays.items():
        limits = pacing.Limits.of(relay)
        state = states.get(key, RelayState(key))
        pause = state.paused_until if state.paused(now, relay) else None
        slot = pacing.next_slot(limits, recent[key], now)
        if pause is not None:
            slot = max(slot, pause)
        found.append(RelayQueue(
            key=key, relay=relay, waiting=waiting.get(key, 0), later=later.get(key, 0),
            sent_last_day=sent.get(key, 0), limits=limits, next_slot=slot,
            last_at=pacing.departure(limits, recent[key], now, waiting.get(key, 0),
                                     not_before=pause),
            paused_until=pause, pause_reason=state.pause_reason if pause else None,
            last_error=state.last_error, down_since=state.down_since,
            last_ok_at=state.last_ok_at))
    return found


# -- transports -------------------------------------------------------------------------


class Transports:
    """One transport (its own ``connections`` lanes) per relay, opened on first use and
    closed together: the daemon keeps them for its life, a run for its rounds."""

    def __init__(self) -> None:
        self._open: dict[str, Transport] = {}

    async def get(self, relay: SmtpSettings) -> Transport:
        transport = self._open.get(relay.key)
        if transport is None:
            # Imported here: status and the dashboard read the relays' queues without
            # loading the SMTP client.
            from mailbot.respond.smtp import transport_for

            transport = await transport_for(relay).__aenter__()
            self._open[relay.key] = transport
        return transport

    async def __aenter__(self) -> Transports:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for transport in self._open.values():
            await transport.__aexit__(None, None, None)
        self._open.clear()


class Unreachable:
    """The relays a sender could not reach, each resting 1, 2, 4 … seconds (at most
    ``longest``) before it is tried again, while the other relays go on (the daemon's)."""

    def __init__(self, longest: float) -> None:
        self.longest = longest
        self._down: dict[str, tuple[datetime, float]] = {}  # key -> (until, next rest)

    def resting(self, now: datetime) -> set[str]:
        return {key for key, (until, _) in self._down.items() if until > now}

    def after_round(self, resting: set[str], down: set[str], now: datetime) -> datetime | None:
        """Notes a round (``resting``: the keys it skipped, ``down``: those it found
        unreachable); returns when the first resting relay may be tried again."""
        for key in list(self._down):
            if key not in resting and key not in down:
                del self._down[key]  # tried again, and reached (or had nothing to send)
        for key in down:
            rest = self._down[key][1] if key in self._down else 1.0
            self._down[key] = (now + timedelta(seconds=rest), min(rest * 2, self.longest))
        return min((until for until, _ in self._down.values()), default=None)
