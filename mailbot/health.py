"""What needs attention: from a snapshot of the installation's facts to a list of problems.

One judgement for every place that reports health: ``mailbot status`` exits 1 when the
list is not empty, ``GET /healthz`` answers 503 with it, ``GET /metrics`` counts it
(``mailbot_attention``). The facts are plain values (mailbot.status reads them from the
database); nothing here reads, writes or looks at the clock.

Something needs attention when:

* **reader_source** — a library's reader source is down (the decide stage could not ask
  it): its requests wait.
* **mailbox** — a mailbox is in error now (its last login or poll failed): its mail is not
  read, and its library waits for it until ``daemon.mailbox_grace`` runs out. A mailbox
  reading again after being down is not a problem.
* **pool** — a library is out of codes of a service it deals in (a pool of that service
  was imported for some month) while patrons ask for them: this month's pool has none
  left and requests for the service wait to be decided; or no pool at all was imported
  for this month and requests for the service were already refused ``pool_exhausted``
  this month (last month's import was not repeated); or requests of a service the library
  offers were answered ``pool_not_ready`` this month and still no code of it is there
  (staff were told by e-mail too, mailbot.respond.staff_alert). A pool that was bought and
  handed out is no problem while nobody waits for it: "no reservations" is the policy.
* **set_aside** — mail set aside for staff after an error while handling it (request
  state ``error``), not yet marked handled on the dashboard.
* **replies** — replies to a patron's request that failed (outbox ``failed``: the relay
  refused them for good, or retrying ran out), not yet marked handled: the patron got no
  answer. A reply is the answer to its request, or the code staff issued for a request
  ("issue a code anyway"); marking that request handled on the dashboard (or a resend that
  goes through) ends the problem. Reminders (a code about to run out, mailbot.housekeeping)
  are left out: the patron has the code already, no request stands behind a reminder, so
  nothing could ever mark it handled and one refused reminder would keep ``status`` at 1
  and ``/healthz`` at 503 for ever. They are counted apart (``reminders_failed``, the
  metric ``mailbot_reminders_failed``); a relay that refuses them is a **relay** problem
  while it lasts.
* **staff_alert** — the e-mail telling staff that a pool was not imported (a
  ``pool_not_ready``, mailbot.respond.staff_alert) failed (a typo in ``staff_email``: 550),
  and that pool is still missing. It is no **replies** problem: no request stands behind
  it (nothing to resend or mark handled) and its Message-ID stops a second alert, so it
  would need attention for ever. It clears once the pool is imported or its month is over;
  failed alerts are counted apart (``staff_alerts_failed``) like reminders.
* **relay** — a relay is paused (it refused our login, or asked us to slow down), or its
  last attempt failed (it could not be reached, or refused us) and it has not taken a
  reply since.
* **job** — a scheduled job's last run failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

_WHEN = "%Y-%m-%d %H:%M:%S %Z"
PAUSE_REASONS = {"auth": "login refused", "throttled": "the provider asked us to slow down"}


# -- the facts -------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolFacts:
    """A library's pool of one service for its current month."""

    service: str
    month: str
    total: int  # codes imported for the month
    left: int  # neither issued nor expired
    waiting: int = 0  # requests for the service waiting to be decided
    refused: int = 0  # requests for the service refused pool_exhausted this month
    dealt_in: bool = False  # a pool of this service was imported for some month
    not_ready: int = 0  # requests for the service answered pool_not_ready this month
    alert_failed: bool = False  # this month's staff alert of the pool failed to send


@dataclass(frozen=True)
class MailboxFacts:
    """A mailbox as staff see it (decide.horizon.mailbox_health): its last complete poll;
    when failing, why, since when, until when its library waits for it (or since when it
    is decided without it), and when its next login is tried."""

    key: str
    library: str
    address: str
    last_poll_at: datetime | None = None
    error: str | None = None
    down_since: datetime | None = None
    waits_until: datetime | None = None
    without_since: datetime | None = None
    next_login: datetime | None = None
    refused: int = 0  # logins refused in a row

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LibraryFacts:
    id: str
    name: str
    month: str  # its current month (in its time zone)
    timezone: str
    reader_source: str  # local | sql | sip2
    source_error: str | None = None
    source_down_since: datetime | None = None
    waiting: int = 0  # requests waiting to be decided
    set_aside: int = 0  # state error, not marked handled
    manual: int = 0  # not a request: left in the manual folder for staff
    pending: int = 0  # replies not sent yet
    failed: int = 0  # replies failed, not marked handled (reminders apart)
    reminders_failed: int = 0  # reminders that failed: facts, never a problem
    alerts_failed: int = 0  # staff alerts that failed, any month: facts (see staff_alert)
    sent: int = 0
    pools: tuple[PoolFacts, ...] = ()
    mailboxes: tuple[MailboxFacts, ...] = ()


@dataclass(frozen=True)
class RelayFacts:
    """A sending account (respond.relays.RelayQueue) and its replies being retried."""

    key: str
    waiting: int = 0  # pending replies due now (retries included)
    later: int = 0  # pending, due later (the send window)
    retrying: int = 0  # pending after a temporary failure
    sent_last_day: int = 0
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    last_at: datetime | None = None  # when the last waiting reply will go out
    paused_until: datetime | None = None  # paused now, until then
    pause_reason: str | None = None  # auth | throttled
    error: str | None = None  # the last attempt's failure, until a reply goes through
    down_since: datetime | None = None
    last_ok_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.paused_until is None and self.error is None


@dataclass(frozen=True)
class JobFacts:
    name: str
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    last_result: str | None = None

    @property
    def failed(self) -> bool:
        return (self.last_result or "").startswith("failed")


@dataclass(frozen=True)
class Snapshot:
    generated_at: datetime
    timezone: str  # the installation's: relay and job times are shown in it
    libraries: tuple[LibraryFacts, ...] = ()
    relays: tuple[RelayFacts, ...] = ()
    jobs: tuple[JobFacts, ...] = ()

    @property
    def mailboxes(self) -> tuple[MailboxFacts, ...]:
        return tuple(mb for lib in self.libraries for mb in lib.mailboxes)


# -- the judgement -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing that needs attention: what kind (the rule's name), which one (``key``: a
    mailbox's or relay's key, a library id, ``library/service/month`` of a pool, a job's
    name), who it is in words (``subject``: "mailbox ebooki@…", "library lib") and what is
    wrong (``reason``). Never a password, code or token in it."""

    what: str
    key: str
    subject: str
    reason: str
    library: str | None = None

    @property
    def message(self) -> str:
        """The whole sentence, for a person: subject and reason."""
        return f"{self.subject} {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "key": self.key, "library": self.library,
                "message": self.message}


def problems(snapshot: Snapshot) -> list[Problem]:
    """Everything that needs attention, library by library (in configuration order),
    then the relays and the jobs."""
    found: list[Problem] = []
    for lib in snapshot.libraries:
        for rule in LIBRARY_RULES:
            found += rule(lib)
    tz = ZoneInfo(snapshot.timezone)
    found += [p for relay in snapshot.relays if (p := relay_problem(relay, tz))]
    found += [p for job in snapshot.jobs if (p := job_problem(job, tz))]
    return found


def at(when: datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime(_WHEN) if when is not None else "?"


def reader_source_problems(lib: LibraryFacts) -> list[Problem]:
    if lib.source_error is None:
        return []
    tz = ZoneInfo(lib.timezone)
    return [Problem("reader_source", lib.id, f"library {lib.id}:", library=lib.id, reason=(
        f"reader source {lib.reader_source} down since {at(lib.source_down_since, tz)} "
        f"({lib.source_error}); {_n(lib.waiting, 'request')} "
        f"wait{'s' if lib.waiting == 1 else ''} for it"))]


def mailbox_problems(lib: LibraryFacts) -> list[Problem]:
    tz = ZoneInfo(lib.timezone)
    return [Problem("mailbox", mb.key, f"mailbox {mb.address}", _mailbox_reason(mb, tz),
                    library=lib.id)
            for mb in lib.mailboxes if not mb.ok]


def _mailbox_reason(mb: MailboxFacts, tz: ZoneInfo) -> str:
    text = f"failing since {at(mb.down_since, tz)}: {mb.error}"
    if mb.without_since is not None:
        text += f"; its library is decided without it since {at(mb.without_since, tz)}"
    elif mb.waits_until is not None:
        text += f"; its library's requests wait for it until {at(mb.waits_until, tz)}"
    else:
        text += "; its library's requests wait for it (mailbox_grace = 0)"
    if mb.next_login is not None:
        text += f"; next login {at(mb.next_login, tz)}"
    return text


def pool_problems(lib: LibraryFacts) -> list[Problem]:
    found = []
    for pool in lib.pools:
        if pool.total == 0 and pool.not_ready:
            found.append(Problem(
                "pool", f"{lib.id}/{pool.service}/{pool.month}",
                f"library {lib.id}: the {pool.service} pool of {pool.month}",
                f"was not imported: {_n(pool.not_ready, 'request')} answered "
                "pool_not_ready this month", library=lib.id))
            continue
        if pool.left > 0 or not pool.dealt_in:
            continue
        if pool.waiting:
            reason = (f"has no code left ({pool.total} imported) and "
                      f"{_n(pool.waiting, 'request')} wait{'s' if pool.waiting == 1 else ''}: "
                      "they will be refused pool_exhausted unless codes are imported")
        elif pool.total == 0 and pool.refused:
            reason = (f"was not imported: {_n(pool.refused, 'request')} refused "
                      "pool_exhausted this month")
        else:
            continue
        found.append(Problem("pool", f"{lib.id}/{pool.service}/{pool.month}",
                             f"library {lib.id}: the {pool.service} pool of {pool.month}",
                             reason, library=lib.id))
    return found


def set_aside_problems(lib: LibraryFacts) -> list[Problem]:
    if not lib.set_aside:
        return []
    return [Problem("set_aside", lib.id, f"library {lib.id}:", library=lib.id, reason=(
        f"{_n(lib.set_aside, 'mail')} set aside for staff after an error while handling "
        "it (the queue page's 'set aside for staff')"))]


def replies_problems(lib: LibraryFacts) -> list[Problem]:
    if not lib.failed:
        return []
    return [Problem("replies", lib.id, f"library {lib.id}:", library=lib.id, reason=(
        f"{_n(lib.failed, 'reply', 'replies')} failed, the patron got no answer (the "
        "queue page's 'failed sends': resend, or mark handled)"))]


def staff_alert_problems(lib: LibraryFacts) -> list[Problem]:
    return [Problem(
        "staff_alert", f"{lib.id}/{pool.service}/{pool.month}",
        f"library {lib.id}: the staff alert of the {pool.service} pool of {pool.month}",
        "failed (check staff_email); the pool is still not imported", library=lib.id)
        for pool in lib.pools if pool.alert_failed and pool.total == 0]


LIBRARY_RULES = (reader_source_problems, mailbox_problems, pool_problems,
                 staff_alert_problems, set_aside_problems, replies_problems)


def relay_problem(relay: RelayFacts, tz: ZoneInfo) -> Problem | None:
    pending = relay.waiting + relay.later
    queue = f"{_n(pending, 'reply', 'replies')} pending"
    if relay.retrying:
        queue += f", {relay.retrying} being retried"
    if relay.paused_until is not None:
        why = PAUSE_REASONS.get(relay.pause_reason or "", relay.pause_reason or "?")
        return Problem("relay", relay.key, f"relay {relay.key}", (
            f"paused until {at(relay.paused_until, tz)} ({why}): {relay.error or '?'}; "
            f"{queue}"))
    if relay.error is not None:
        return Problem("relay", relay.key, f"relay {relay.key}", (
            f"failing since {at(relay.down_since, tz)}: {relay.error}; {queue}"))
    return None


def job_problem(job: JobFacts, tz: ZoneInfo) -> Problem | None:
    if not job.failed:
        return None
    return Problem("job", job.name, f"job {job.name}",
                   f"failed at {at(job.last_run_at, tz)}: {job.last_result}")


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
