"""What staff can do from the dashboard. Each action is one transaction that also writes
its audit-log entry, so an action is never done without a record of who did it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot import quotas
from mailbot.clock import month_end, month_key, month_of, parse_month
from mailbot.config import Settings
from mailbot.db.models import AuditLog, Code, LedgerEntry, Mailbox, Outbox, Request
from mailbot.decide import reply_context
from mailbot.desk import desk_quota, one_at_a_time, owed_to_email
from mailbot.ledger import Channel, InSession, codes_left
from mailbot.outcomes import NOT_OVERRIDABLE, OutboxState, Outcome, RequestState
from mailbot.respond.compose import compose_reply
from mailbot.rules.window import next_send_time


class ActionRefused(Exception):
    """The action cannot be done; the message (an i18n key) says why."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def audit(session: Session, *, user: str, action: str, library_id: str | None,
          now: datetime, request_id: int | None = None, code_id: int | None = None,
          detail: str = "", args: dict[str, Any] | None = None) -> None:
    """Appends to the audit log. ``detail`` is the English line (for the CLI and old
    readers); ``args`` are the values of the entry's text in the dashboard's catalogue
    (key ``audit_<action>``), JSON-able (str, int), so staff read it in their language."""
    session.add(AuditLog(at=now, user_name=user, library_id=library_id, action=action,
                         request_id=request_id, code_id=code_id, detail=detail[:2000],
                         args=args))


def resend(session: Session, *, outbox_id: int, request: Request, user: str,
           now: datetime) -> Outbox:
    """Puts a sent or failed reply back in the outbox, due now, with the same Message-ID."""
    row = session.get(Outbox, outbox_id)
    if row is None or (row.request_id != request.id and not (
            row.kind == "override" and request.code and row.code_id == request.code.id)):
        raise ActionRefused("err_no_such_reply")
    if not row.message:
        raise ActionRefused("err_reply_purged")
    if row.state == OutboxState.PENDING:
        raise ActionRefused("err_reply_pending")
    before = f"{row.state}, {row.attempts} attempt(s)" + (
        f", last error: {row.last_error}" if row.last_error else "")
    values = {"reply": row.id, "to": row.to_address, "reply_state": str(row.state),
              "attempts": row.attempts}
    if row.last_error:
        values.update(variant="error", error=row.last_error[:500])
    # The daemon gives up on a reply retry_for seconds after its first failure: a resend
    # starts that clock again.
    row.state, row.due_at, row.created_at = OutboxState.PENDING, now, now
    row.retry_at, row.last_error, row.sent_at, row.attempts = None, None, None, 0
    row.failing_since = None
    audit(session, user=user, action="resend", library_id=request.library_id, now=now,
          request_id=request.id, detail=f"reply #{row.id} to {row.to_address} (was {before})",
          args=values)
    return row


def mark_handled(session: Session, *, request: Request, user: str, note: str,
                 now: datetime) -> None:
    audit(session, user=user, action="handled", library_id=request.library_id, now=now,
          request_id=request.id, detail=note.strip(),
          args={"note": note.strip()} if note.strip() else {"variant": "bare"})


@dataclass(frozen=True)
class Override:
    code: Code
    outbox: Outbox


# Requests staff may still issue a code for ("issue anyway"), unless their outcome is in
# NOT_OVERRIDABLE, they have a code already or no address to send it to.
OVERRIDABLE_STATES = (RequestState.DECIDED, RequestState.MANUAL, RequestState.ERROR)


def overridable(request: Request) -> bool:
    """Whether the request page offers "issue anyway": override() refuses all others."""
    return (request.outcome not in NOT_OVERRIDABLE and request.state in OVERRIDABLE_STATES
            and request.code is None and bool(request.from_address))


def override(session: Session, settings: Settings, *, request: Request, service: str,
             card: str, reason: str, user: str, now: datetime) -> Override:
    """"Issue anyway": a refused request gets a code from this month's pool, a ledger entry
    and a reply with the code. Codes owed to earlier e-mail requests are left alone."""
    reason = reason.strip()
    card = card.strip()
    if not reason:
        raise ActionRefused("err_reason_required")
    if request.outcome in NOT_OVERRIDABLE or request.state not in OVERRIDABLE_STATES:
        raise ActionRefused("err_not_overridable")
    if request.code is not None:
        raise ActionRefused("err_has_code")
    if not request.from_address:
        raise ActionRefused("err_no_address")
    if service not in settings.catalogue:
        raise ActionRefused("err_service")
    if not card:
        raise ActionRefused("err_card_required")
    library = settings.library(request.library_id)
    tz = settings.library_tz(library.id)
    year, mon = month_of(now, tz)
    month = month_key(year, mon)
    one_at_a_time(session, settings, library.id)  # as the desk issues
    left = codes_left(session, library_id=library.id, service=service, month=month)
    owed = owed_to_email(session, library.id, service, now)
    # Where the library keeps quotas, an override draws as the desk does: the desk's part,
    # then what of the general part no earlier e-mail is owed; never the first-timers'.
    # (The desk's part is never owed to an e-mail: with quotas, only desk_part decides.)
    quota = desk_quota(session, library, tz, service=service, year=year, mon=mon, now=now)
    if quota is not None and left > 0:
        if quotas.desk_part(quota, owed) is None:
            raise ActionRefused("err_quota_kept", left=left, first_time=quota.first_time,
                                owed=owed)
    elif left - owed <= 0:
        raise ActionRefused("err_pool_empty", left=left, owed=owed)
    code = InSession(session, library.id).issue(
        service=service, month=month, card=card, email=request.from_address,
        request_id=request.id, now=now, channel=Channel.OVERRIDE)
    if code is None:
        raise ActionRefused("err_pool_empty", left=0, owed=owed)
    previous = request.outcome or request.state
    request.trail = [*(request.trail or []), {
        "rule": "staff_override", "result": "issued",
        "note": "staff_override", "args": {"user": user, "reason": reason, "was": str(previous)}}]
    request.outcome, request.state = Outcome.ISSUED, RequestState.DECIDED
    request.decided_at = now
    request.service = service
    request.card_number = card
    request.month = month
    mailbox = session.get(Mailbox, request.mailbox_id)
    assert mailbox is not None
    ctx = reply_context(library, tz, year, mon, service=service, subject=request.subject,
                        received_at=request.received_at, card_number=card,
                        patron_name=request.patron_name, catalogue=settings.catalogue)
    ctx["code"] = code.code
    reply = compose_reply(
        outcome=Outcome.ISSUED, context=ctx, languages=library.languages,
        library_name=library.name, mailbox_address=mailbox.address,
        to=request.from_address, original_subject=request.subject,
        original_message_id=request.message_id, original_references=(),
        templates_dir=settings.templates_dir, texts_dir=library.texts_dir,
        request_key=f"{mailbox.key}|{request.uidvalidity}|{request.uid}|"
                    f"{request.message_id}|override", now=now)
    pending = session.scalar(select(Outbox).where(Outbox.request_id == request.id,
                                                  Outbox.state == OutboxState.PENDING))
    withdrawn = ""
    values = {"was": str(previous), "service": service, "card": card, "reason": reason}
    if pending is not None:
        values.update(variant="withdrawn", reply=pending.id)
        # The refusal has not gone out yet: the patron gets the code instead of it.
        withdrawn = f"; unsent {pending.outcome} reply #{pending.id} withdrawn"
        session.delete(pending)
    row = Outbox(kind="override", request_id=None, code_id=code.id, library_id=library.id,
                 mail_from=reply.mail_from, to_address=reply.to, message_id=reply.message_id,
                 outcome=Outcome.ISSUED, message=reply.message, state=OutboxState.PENDING,
                 created_at=now, due_at=next_send_time(library, tz, now), attempts=0)
    session.add(row)
    session.flush()
    audit(session, user=user, action="override", library_id=library.id, now=now,
          request_id=request.id, code_id=code.id,
          detail=f"{previous} -> issued ({service}, card {card}): {reason}{withdrawn}",
          args=values)
    return Override(code, row)


def slip_code(session: Session, code_id: int) -> tuple[Code, LedgerEntry] | None:
    row = session.execute(select(Code, LedgerEntry).join(
        LedgerEntry, LedgerEntry.code_id == Code.id).where(Code.id == code_id)).first()
    return (row[0], row[1]) if row else None


def month_over(settings: Settings, library_id: str, month: str, now: datetime) -> bool:
    return month_end(*parse_month(month), settings.library_tz(library_id)) <= now
