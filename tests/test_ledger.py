"""Issuing a code (mailbot/ledger.py): one function for the e-mail batch, the desk and the
staff override, each writing exactly what it always wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from sqlalchemy import select

from mailbot.db.models import Code, CodePool, LedgerEntry, Library, Mailbox, Request
from mailbot.db.session import open_database
from mailbot.decide.writes import BatchWrites
from mailbot.ledger import Channel, InSession, codes_left, issue_code

NOW = datetime(2026, 11, 1, 0, 3, tzinfo=UTC)


def _pool(database_url: str, n: int = 2):
    sessions = open_database(database_url)
    with sessions.begin() as s:
        s.add(Library(id="lib", name="Biblioteka"))
        s.flush()
        pool = CodePool(library_id="lib", service="legimi", month="2026-11",
                        source_file="x.csv", imported_at=NOW, size=n)
        s.add(pool)
        s.flush()
        s.add_all(Code(code=f"LEDGER-{i}", pool_id=pool.id, library_id="lib",
                       service="legimi", month="2026-11") for i in range(1, n + 1))
    return sessions


def test_a_code_issued_at_the_desk_is_marked_issued_and_entered_in_the_ledger(database_url):
    # No request: the code gets no request_id; the ledger keeps the address in lower case
    # and its key, and the channel; the next code stays free.
    sessions = _pool(database_url)
    with sessions.begin() as s:
        book = InSession(s, "lib")
        code = issue_code(book, book, library_id="lib", service="legimi", month="2026-11",
                          card="0012345", email="Anna.K+x@Example.ORG", request_id=None,
                          now=NOW, channel=Channel.DESK)
        assert code is not None and code.code == "LEDGER-1"
    with sessions() as s:
        codes = {c.code: (c.issued_at, c.request_id) for c in s.scalars(select(Code))}
        [entry] = s.scalars(select(LedgerEntry)).all()
        left = codes_left(s, library_id="lib", service="legimi", month="2026-11")
    assert codes == {"LEDGER-1": (NOW, None), "LEDGER-2": (None, None)}
    assert (entry.code_id, entry.library_id, entry.service, entry.month, entry.card_number,
            entry.email, entry.email_key, entry.request_id, entry.issued_at,
            entry.channel) == (code.id, "lib", "legimi", "2026-11", "0012345",
                               "anna.k+x@example.org", "anna.k@example.org", None, NOW,
                               "desk")
    assert left == 1


def test_an_override_gives_the_code_to_its_request_and_an_empty_pool_gives_none(
        database_url):
    sessions = _pool(database_url, n=1)
    with sessions.begin() as s:
        s.add(Mailbox(id=1, key="k", library_id="lib", address="ebooki@biblioteka.test"))
        s.flush()
        request = Request(library_id="lib", mailbox_id=1, uidvalidity=1, uid=1,
                          received_at=NOW, fetched_at=NOW, message_id="<r@t>", raw=b"",
                          subject="LEGIMI")
        s.add(request)
        s.flush()
        rid = request.id
        book = InSession(s, "lib")
        code = issue_code(book, book, library_id="lib", service="legimi", month="2026-11",
                          card="0012345", email="Anna@example.org", request_id=rid, now=NOW,
                          channel=Channel.OVERRIDE)
        assert code is not None
        assert issue_code(book, book, library_id="lib", service="legimi", month="2026-11",
                          card="0099999", email=None, request_id=rid, now=NOW,
                          channel=Channel.OVERRIDE) is None
    with sessions() as s:
        [issued] = s.scalars(select(Code)).all()
        [entry] = s.scalars(select(LedgerEntry)).all()
    assert (issued.request_id, issued.issued_at) == (rid, NOW)
    assert (entry.request_id, entry.channel, entry.email) == (rid, "override",
                                                              "anna@example.org")


def test_the_batch_writes_the_same_entry_the_session_would():
    # The e-mail batch takes its codes from those read ahead and writes in bulk: the same
    # values, and the code marked issued to its request.
    row = SimpleNamespace(id=5, code="LEDGER-5", pool_id=2, service="legimi")

    class ReadAhead:
        def take(self, service: str, month: str):
            assert (service, month) == ("legimi", "2026-11")
            return row

    writes = BatchWrites()
    code = issue_code(ReadAhead(), writes, library_id="lib", service="legimi",
                      month="2026-11", card="0012345", email="", request_id=9, now=NOW,
                      channel=Channel.EMAIL)
    assert code is row
    assert writes.codes_issued == [{"id": 5, "request_id": 9, "issued_at": NOW}]
    assert writes.ledger == [{"code_id": 5, "library_id": "lib", "service": "legimi",
                              "month": "2026-11", "card_number": "0012345", "email": None,
                              "request_id": 9, "issued_at": NOW, "channel": "email"}]
