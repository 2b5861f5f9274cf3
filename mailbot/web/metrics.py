"""``GET /metrics``: Prometheus metrics (text format, prometheus-client), for Prometheus,
Zabbix or anything that scrapes.

Every number is read from the database at the scrape by a collector of this module (no
process globals, no counters kept in memory): the daemon, ``mailbot demo`` and any number
of processes sharing one database answer alike, and a restart loses nothing. The facts and
the judgement are ``mailbot status``'s (mailbot.status.gather, mailbot.health.problems);
this module adds what only the metrics show (requests by outcome, send latency).

No login and no session (web.app lets it past the session cookie); it only reads, without
SQLite's write lock. Labels are few and never personal: library id, service, month,
outcome, a mailbox's or relay's key. When the database cannot be read the answer is
``mailbot_up 0`` alone.

Send latency is over the replies sent in the last hour, per library: seconds from when a
reply was due (decided; or, for a library with a send window, the window's opening; or
staff's resend) to when its relay took it, as three quantile gauges (0.5, 0.9 and 1, the
slowest) beside the number of replies sent in that hour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailbot import __version__
from mailbot.clock import as_aware
from mailbot.db.models import Outbox
from mailbot.db.models import Request as MailRequest
from mailbot.db.session import reading
from mailbot.health import Problem, Snapshot, problems
from mailbot.outcomes import OutboxState
from mailbot.status import gather

if TYPE_CHECKING:
    from mailbot.config import Settings
    from mailbot.web.context import WebState

log = logging.getLogger(__name__)

PATH = "/metrics"
# The classic text format, which every Prometheus and Zabbix reads (and which
# generate_latest writes for names like ours); newer prometheus-client releases announce
# version 1.0.0 by default, which older scrapers do not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.9, 1.0)


def routes() -> list[Route]:
    return [Route(PATH, metrics, methods=["GET"])]


async def metrics(request: Request) -> Response:
    state: WebState = request.app.state.web
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(state))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, headers={"Content-Type": CONTENT_TYPE})


@dataclass(frozen=True)
class Throughput:
    """What only the metrics show: requests decided by (library, outcome), and per library
    the send latencies (seconds, sorted) of the replies sent in the last hour."""

    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)


def throughput(sessions: sessionmaker[Session], settings: Settings,
               now: datetime) -> Throughput:
    """Read for a scrape. The latency query asks for the configured relays' last hour
    (ix_outbox_relay_sent: relay, sent_at), so it reads that hour's rows only, never every
    reply ever sent; a reply is marked sent with its relay (respond.rows), and one sent
    through a relay since removed from the config was not sent in the last hour."""
    relays = sorted({*settings.relays, settings.smtp.key})  # the global one: see queue_by_relay
    with reading(sessions) as session:
        outcomes = {(lib, outcome): n for lib, outcome, n in session.execute(
            select(MailRequest.library_id, MailRequest.outcome, func.count())
            .where(MailRequest.outcome.is_not(None))
            .group_by(MailRequest.library_id, MailRequest.outcome))}
        latencies: dict[str, list[float]] = {}
        for lib, due, sent in session.execute(
                select(Outbox.library_id, Outbox.due_at, Outbox.sent_at)
                .where(Outbox.relay.in_(relays), Outbox.sent_at > now - LATENCY_WINDOW,
                       Outbox.state == OutboxState.SENT, Outbox.kind == "reply")):
            seconds = (as_aware(sent) - as_aware(due)).total_seconds()
            latencies.setdefault(lib, []).append(max(0.0, seconds))
    return Throughput(outcomes, {lib: sorted(v) for lib, v in latencies.items()})


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted ``values`` (not empty)."""
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


class DatabaseCollector(Collector):
    """Reads the metrics from the database at each collect (each scrape)."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        now = self.state.clock()
        try:
            snapshot = gather(self.state.sessions, self.state.settings, now)
            seen = throughput(self.state.sessions, self.state.settings, now)
        except SQLAlchemyError as exc:
            log.warning("%s: the database cannot be read: %s", PATH, exc)
            yield _gauge("mailbot_up", UP, [((), 0)])
            return
        yield from families(snapshot, problems(snapshot), seen)


UP = "1: the database was read for this scrape; 0: it could not be (no other metric then)"


def _gauge(name: str, doc: str, samples: Iterable[tuple[tuple[str, ...], float]],
           labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def families(snapshot: Snapshot, found: list[Problem], seen: Throughput) -> Iterator[Metric]:
    """Every metric of a scrape, from the facts read for it."""
    libs = snapshot.libraries
    yield _gauge("mailbot_up", UP, [((), 1)])
    info = InfoMetricFamily("mailbot", "The mailbot version answering")
    info.add_metric([], {"version": __version__})
    yield info
    yield _gauge("mailbot_attention", "Problems that need attention (what `mailbot status` "
                 "lists; 0: healthy)", [((), len(found))])
    # A gauge, not a counter: staff's "issue a code anyway" rewrites a request's outcome
    # (unknown_card -> issued), so one outcome's number can go down.
    yield _gauge("mailbot_requests", "Requests decided, by library and outcome (every "
                 "request the database holds; an outcome staff change moves it)",
                 sorted(((lib, outcome), n) for (lib, outcome), n in seen.outcomes.items()),
                 ("library", "outcome"))
    per_library = ("library",)
    yield _gauge("mailbot_queue_waiting", "Requests waiting to be decided",
                 [((lib.id,), lib.waiting) for lib in libs], per_library)
    yield _gauge("mailbot_set_aside", "Mail set aside for staff after an error, not marked "
                 "handled", [((lib.id,), lib.set_aside) for lib in libs], per_library)
    yield _gauge("mailbot_outbox_pending", "Replies not sent yet (waiting for the send "
                 "window, a relay's limits or pause, or being retried)",
                 [((lib.id,), lib.pending) for lib in libs], per_library)
    yield _gauge("mailbot_outbox_failed", "Replies to requests that failed, not marked "
                 "handled (reminders apart)", [((lib.id,), lib.failed) for lib in libs],
                 per_library)
    yield _gauge("mailbot_reminders_failed", "Reminders (a code about to run out) that "
                 "failed; never needs attention, as the patron has the code",
                 [((lib.id,), lib.reminders_failed) for lib in libs], per_library)
    yield _gauge("mailbot_reader_source_up", "1: the library's reader source answered when "
                 "last asked; 0: it is down",
                 [((lib.id,), int(lib.source_error is None)) for lib in libs], per_library)
    pool = ("library", "service", "month")
    yield _gauge("mailbot_codes_left", "Codes neither issued nor expired in the library's "
                 "pool of this month",
                 [((lib.id, p.service, p.month), p.left) for lib in libs for p in lib.pools],
                 pool)
    yield _gauge("mailbot_codes_imported", "Codes imported for the library's pool of this "
                 "month", [((lib.id, p.service, p.month), p.total)
                           for lib in libs for p in lib.pools], pool)
    mailbox = ("library", "mailbox")
    boxes = snapshot.mailboxes
    # A mailbox never read completely (just configured, not polled yet) has not worked
    # yet: 0, not 1.
    yield _gauge("mailbot_mailbox_up", "1: the mailbox's last login and poll worked; 0: it "
                 "is in error, or has not been read completely yet",
                 [((mb.library, mb.key), int(mb.ok and mb.last_poll_at is not None))
                  for mb in boxes], mailbox)
    yield _gauge("mailbot_mailbox_last_poll_timestamp_seconds", "When the mailbox was last "
                 "read completely (Unix time; absent until it first is)",
                 [((mb.library, mb.key), mb.last_poll_at.timestamp()) for mb in boxes
                  if mb.last_poll_at is not None], mailbox)
    relay = ("relay",)
    relays = snapshot.relays
    yield _gauge("mailbot_relay_up", "1: the relay is well; 0: it is paused, or its last "
                 "attempt failed", [((r.key,), int(r.ok)) for r in relays], relay)
    yield _gauge("mailbot_relay_pending", "Replies waiting for the relay (due now and later)",
                 [((r.key,), r.waiting + r.later) for r in relays], relay)
    yield _gauge("mailbot_relay_retrying", "Replies through the relay being retried after a "
                 "temporary failure", [((r.key,), r.retrying) for r in relays], relay)
    yield _gauge("mailbot_replies_sent_last_hour", "Replies the relays took in the last hour",
                 [((lib.id,), len(seen.latencies.get(lib.id, []))) for lib in libs],
                 per_library)
    yield _gauge("mailbot_send_latency_seconds", "Seconds from a reply being due to its "
                 "relay taking it, over the replies sent in the last hour (quantile 1: the "
                 "slowest; absent when none was sent)",
                 [((lib, f"{q:g}"), quantile(values, q))
                  for lib, values in sorted(seen.latencies.items()) for q in QUANTILES],
                 ("library", "quantile"))
