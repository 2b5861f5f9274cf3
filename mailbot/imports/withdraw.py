"""Withdrawing a pool: the month's codes of one service that no patron has yet leave
mailbot, audited; the issued ones stay, with their ledger entries and requests.

For a file imported by mistake (a reader export taken for codes, next month's codes put
in this month) or codes the platform took back. The codes are deleted, not marked: a code
not issued is referenced by nothing (the ledger, the outbox, the desk's slips and the
reminders all point at issued codes only), and a deleted code can be imported again, into
the right month, from a corrected file. Only codes that could still be issued are taken
(the ledger's ``FREE``): an ended month's expired codes stay in its history and reports.

The deletion is one statement in one transaction, so it meets the deciding stage the way
issuing does: on SQLite under the one write lock, on PostgreSQL row by row, where a code
being issued meanwhile is re-checked after its lock and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.clock import parse_month
from mailbot.config import Settings
from mailbot.db.models import AuditLog, Code, CodePool
from mailbot.errors import BadInput
from mailbot.ledger import FREE

ACTION = "withdraw_pool"  # the audit log's action


@dataclass(frozen=True)
class Withdrawal:
    library_id: str
    service: str
    month: str
    withdrawn: int  # codes deleted (or, in a dry run, that would be)
    issued: int  # codes of the pool already issued: kept
    expired: int  # codes of the pool expired at the month's end: kept


def withdraw_pool(sessions: sessionmaker[Session], settings: Settings, *, library_id: str,
                  service: str, month: str, user: str, now: datetime,
                  dry_run: bool = False) -> Withdrawal:
    """Deletes the free codes of ``library_id``'s ``service`` pool for ``month`` and writes
    the audit entry (``user``: who did it); with ``dry_run`` counts them and changes
    nothing. A library, service or month that is wrong, or a pool never imported, is
    BadInput naming the option."""
    settings.library(library_id)
    known = settings.catalogue.ids
    if service not in known:
        raise BadInput(f"unknown service {service!r} (use {' or '.join(known)})",
                       column="--service")
    try:
        parse_month(month)
    except ValueError:
        raise BadInput(f"month must be YYYY-MM, not {month!r}", column="--month") from None
    pool = (Code.library_id == library_id, Code.service == service, Code.month == month)
    with sessions.begin() as session:
        if not session.scalar(select(func.count(CodePool.id)).where(
                CodePool.library_id == library_id, CodePool.service == service,
                CodePool.month == month)):
            raise BadInput(f"no {service} pool for {month} was imported in library "
                           f"{library_id}", column="--month")
        issued, expired = session.execute(
            select(func.count(Code.id).filter(Code.issued_at.is_not(None)),
                   func.count(Code.id).filter(Code.issued_at.is_(None),
                                              Code.expired_at.is_not(None)))
            .where(*pool)).one()
        if dry_run:
            free = session.scalar(select(func.count(Code.id)).where(*pool, *FREE)) or 0
            return Withdrawal(library_id, service, month, free, issued, expired)
        withdrawn = session.execute(delete(Code).where(*pool, *FREE)).rowcount or 0
        session.add(AuditLog(
            at=now, user_name=user, library_id=library_id, action=ACTION,
            detail=f"{service} {month}: {withdrawn} unissued code(s) withdrawn; "
                   f"{issued} issued and {expired} expired kept",
            # The dashboard words the entry from these (audit_withdraw_pool in web.i18n).
            args={"service": service, "month": month, "n": withdrawn, "issued": issued,
                  "expired": expired}))
    return Withdrawal(library_id, service, month, withdrawn, issued, expired)
