"""RODO/GDPR requests of one patron: export everything held about them, or erase it.

Erasure removes the reader record, the mail they sent (raw and parsed personal fields),
the replies' bodies and the patron's details in the staff audit log. The ledger keeps that a code was issued — a code is never issued
twice, and the library accounts for its purchases — but its card number becomes a
pseudonym and its address is dropped; this is the one change the append-only ledger
allows, and it is made only here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.db.models import AuditLog, Code, LedgerEntry, Outbox, Reader, Request

ERASED = "[erased]"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _rows(session: Session, library_id: str, card: str):  # noqa: ANN202
    reader = session.scalar(select(Reader).where(Reader.library_id == library_id,
                                                 Reader.card_number == card))
    ledger = session.scalars(select(LedgerEntry).where(LedgerEntry.library_id == library_id,
                                                       LedgerEntry.card_number == card)).all()
    emails = {e for e in [reader.email if reader else None, *(x.email for x in ledger)] if e}
    requests = session.scalars(
        select(Request).where(Request.library_id == library_id,
                              or_(Request.card_number == card,
                                  Request.from_address.in_(emails) if emails else False))
        .order_by(Request.received_at)).all()
    code_ids = [x.code_id for x in ledger]
    outbox = session.scalars(select(Outbox).where(
        or_(Outbox.request_id.in_([r.id for r in requests]), Outbox.code_id.in_(code_ids)))
        .order_by(Outbox.id)).all()
    codes = {c.id: c for c in session.scalars(select(Code).where(Code.id.in_(code_ids)))}
    return reader, ledger, requests, outbox, codes


def export_patron(sessions: sessionmaker[Session], *, library_id: str, card: str,
                  now: datetime) -> dict[str, Any]:
    """Everything mailbot holds about one card, as plain data (for a JSON file)."""
    with sessions() as session:
        reader, ledger, requests, outbox, codes = _rows(session, library_id, card)
        return {
            "library": library_id,
            "card_number": card,
            "exported_at": now.isoformat(),
            "reader": None if reader is None else {
                "first_name": reader.first_name, "last_name": reader.last_name,
                "email": reader.email,
                "valid_until": reader.valid_until.isoformat() if reader.valid_until else None,
                "balance_due": str(reader.balance_due), "overdue_items": reader.overdue_items,
                "data_updated_on": reader.data_updated_on.isoformat()
                if reader.data_updated_on else None,
                "last_loan_on": reader.last_loan_on.isoformat() if reader.last_loan_on else None,
                "birth_date": reader.birth_date.isoformat() if reader.birth_date else None,
                "confirmed": reader.confirmed,
            },
            "requests": [{
                "received_at": _iso(r.received_at), "from": r.from_address,
                "subject": r.subject, "service": r.service, "kind": r.kind,
                "outcome": r.outcome, "decided_at": _iso(r.decided_at), "trail": r.trail,
                "mail": r.raw.decode("utf-8", "replace") if r.raw else None,
            } for r in requests],
            "codes": [{
                "service": x.service, "month": x.month, "code": codes[x.code_id].code,
                "issued_at": _iso(x.issued_at), "channel": x.channel, "email": x.email,
                "activated_at": _iso(codes[x.code_id].activated_at),
            } for x in ledger],
            "messages_sent": [{
                "kind": o.kind, "to": o.to_address, "outcome": o.outcome, "state": o.state,
                "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at),
            } for o in outbox],
        }


def erase_patron(sessions: sessionmaker[Session], *, library_id: str, card: str,
                 dry_run: bool = False) -> dict[str, int]:
    """Erases one card's personal data; returns what was (or would be) erased."""
    pseudonym = "erased:" + hashlib.sha256(f"{library_id}|{card}".encode()).hexdigest()[:16]
    with sessions.begin() as session:
        reader, ledger, requests, outbox, _codes = _rows(session, library_id, card)
        counts = {"reader": int(reader is not None), "requests": len(requests),
                  "messages": len(outbox), "ledger": len(ledger)}
        if dry_run:
            session.rollback()
            return counts
        if reader is not None:
            session.delete(reader)
        for r in requests:
            r.raw, r.from_address, r.patron_name = None, None, None
            r.subject, r.card_number = ERASED, None
            # A note's values name the patron too (a card, a reason typed by staff).
            r.trail = [{**{k: v for k, v in t.items() if k != "args"}, "note": ERASED}
                       if "note" in t else t for t in r.trail]
        for o in outbox:
            o.message, o.to_address = b"", ERASED
        session.info["erasure"] = True  # the ledger's and audit log's one permitted change
        for x in ledger:
            x.card_number, x.email = pseudonym, None
        # Staff actions stay recorded (who did what when), without this patron's details.
        request_ids = [r.id for r in requests]
        code_ids = [x.code_id for x in ledger]
        for entry in session.scalars(select(AuditLog).where(or_(
                AuditLog.request_id.in_(request_ids), AuditLog.code_id.in_(code_ids),
                AuditLog.detail.contains(card)))):
            entry.detail, entry.args = ERASED, None
    return counts
