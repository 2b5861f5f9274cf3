"""The desk's new forms ("issue anyway", reprint) keep the dashboard's rules: CSRF, the
staff member's libraries only, and a reprint only of the code that card got this month
in this library — against the real app (Starlette's TestClient) and SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailbot.clock import parse_month
from mailbot.db.models import AuditLog, Code, LedgerEntry
from mailbot.respond.i18n import format_month
from tests.web.webenv import READER_HEADER, csrf_of, login, make_site, reader_row, seed_requests


@pytest.fixture
def site(tmp_path):
    site = make_site(tmp_path)
    seed_requests(site)  # North: Anna (1000001) got a code by e-mail; South: Olga
    assert site.add_user("north-staff", "north") == 0
    assert site.add_user("south-staff", "south") == 0
    return site


def _counts(site):  # noqa: ANN001, ANN202
    with site.sessions() as s:
        return (s.scalar(select(func.count(AuditLog.id))),
                s.scalar(select(func.count(LedgerEntry.id))))


def test_override_and_reprint_are_scoped_checked_and_audited(site):
    # Another library's staff, a forged code id, a missing token: 404 or 403, nothing
    # written. North's staff reprint Anna's code and issue one anyway to a card not on
    # file, each audited.
    with site.sessions() as s:
        anna = s.scalar(select(Code.id).where(Code.library_id == "north",
                                              Code.issued_at.is_not(None)))
    south = site.client()
    login(south, "south-staff")
    token = csrf_of(south.get("/desk").text)
    before = _counts(site)
    for data in ({"library": "north", "card": "1000002", "action": "override",
                  "reason": "paid"},
                 {"library": "north", "card": "1000001", "action": "reprint",
                  "code_id": str(anna)},
                 {"library": "south", "card": "1000001", "action": "reprint",
                  "code_id": str(anna)}):
        r = south.post("/desk", data={"csrf": token, "name": "", "service": "legimi",
                                      **data})
        assert r.status_code == 404, data
        assert "NORTH-CODE" not in r.text
    north = site.client()
    login(north, "north-staff")
    token = csrf_of(north.get("/desk").text)
    base = {"library": "north", "name": "", "service": "legimi"}
    for data in ({"card": "1999999", "action": "override", "reason": "paid"},
                 {"card": "1000001", "action": "reprint", "code_id": str(anna)}):
        assert north.post("/desk", data={**base, **data}).status_code == 403
    # Jan's card, Anna's code: not his.
    r = north.post("/desk", data={"csrf": token, **base, "card": "1000002",
                                  "action": "reprint", "code_id": str(anna)})
    assert r.status_code == 404
    assert _counts(site) == before

    # The stranger's card is not on file: refused, "Issue anyway" offered (in English
    # too), and with a reason issued at the desk.
    page = north.post("/desk?lang=en", data={"csrf": token, **base, "card": "1999999",
                                             "action": "check"}).text
    assert 'data-outcome="unknown_card"' in page and "Issue anyway" in page
    r = north.post("/desk", data={"csrf": token, **base, "card": "1999999",
                                  "action": "override", "reason": "nowa karta",
                                  "overruled": "unknown_card"},
                   follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/desk/slip/")
    r = north.post("/desk", data={"csrf": token, **base, "card": "1000001",
                                  "action": "reprint", "code_id": str(anna)},
                   follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/desk/slip/{anna}?reprint=1"
    slip = north.get(r.headers["location"]).text
    assert "NORTH-CODE-000" in slip and 'data-testid="slip-reprint"' in slip
    with site.sessions() as s:
        audits = {a.action: a for a in s.scalars(select(AuditLog).where(
            AuditLog.action.in_(("desk_override", "desk_reprint"))))}
        entry = s.scalars(select(LedgerEntry).where(
            LedgerEntry.card_number == "1999999")).one()
    assert entry.channel == "desk" and entry.email is None
    assert audits["desk_override"].args["outcome"] == "unknown_card"
    assert audits["desk_override"].args["reason"] == "nowa karta"
    assert audits["desk_override"].user_name == "north-staff"
    assert audits["desk_reprint"].code_id == anna
    # The audit log words both in the reader's language.
    log = north.get("/audit?lang=en").text
    assert "over a refusal (unknown card)" in log and "Reason: nowa karta" in log
    log = north.get("/audit?lang=pl").text
    assert "mimo odmowy (nieznana karta)" in log and "Powód: nowa karta" in log
    assert "Ponowny wydruk potwierdzenia kodu Legimi" in log


def _override(client, token, card, reason, shown):  # noqa: ANN001, ANN202
    return client.post("/desk", data={"csrf": token, "library": "north", "name": "",
                                      "service": "legimi", "card": card,
                                      "action": "override", "reason": reason,
                                      "overruled": shown}, follow_redirects=False)


def test_issue_anyway_overrules_only_what_was_shown_and_keeps_the_reason(site):
    # The page posts the refusals it showed; one added since (a reader import) stops the
    # issue with the new verdict. A patron eligible by the submit is issued a code and
    # the reason is kept in the audit log all the same.
    north = site.client()
    login(north, "north-staff")
    token = csrf_of(north.get("/desk").text)
    page = north.post("/desk", data={"csrf": token, "library": "north", "name": "",
                                     "service": "legimi", "card": "1999999",
                                     "action": "check"}).text
    assert 'name="overruled" value="unknown_card"' in page
    year = site.window().year
    readers = site.root / "readers-late.csv"
    readers.write_text(
        f"{READER_HEADER}\n{reader_row('1000002', 'Jan', 'Kowal', 'jan@patron.test', year)}\n"
        f"1999999;Obcy;Ktoś;obcy@patron.test;{year - 1}-12-31;20,00;3;{year}-01-15;"
        f"{year}-02-01\n", encoding="utf-8")
    assert site.cli("import-readers", str(readers), "--library", "north") == 0
    before = _counts(site)
    r = _override(north, token, "1999999", "nowa karta", "unknown_card")
    assert r.status_code == 200
    assert "Od sprawdzenia werdykt się zmienił" in r.text
    assert 'data-outcome="inactive_account"' in r.text
    assert 'name="overruled" value="inactive_account,debt,overdue"' in r.text
    assert _counts(site) == before
    # Jan was shown a refusal the staff overruled; by the submit he is eligible.
    r = _override(north, token, "1000002", "zapłacił karę", "debt")
    assert r.status_code == 303
    with site.sessions() as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "desk_issue")).one()
    assert audit.args["reason"] == "zapłacił karę"
    log = north.get("/audit?lang=pl").text
    assert "Powód: zapłacił karę" in log


def test_a_slip_opens_only_right_after_its_issue_or_reprint(site):
    # The slip shows the code whole: only the session that just issued (or, audited,
    # reprinted) it may open it; any other code of the library, or another session of
    # the same staff member, is "not found". The requests list links to the desk's
    # check of the card, whose reprint is the audited way back to the slip.
    with site.sessions() as s:
        anna = s.scalar(select(Code.id).where(Code.library_id == "north",
                                              Code.issued_at.is_not(None)))
    north = site.client()
    login(north, "north-staff")
    token = csrf_of(north.get("/desk").text)
    r = north.get(f"/desk/slip/{anna}")
    assert r.status_code == 404 and "NORTH-CODE" not in r.text
    assert north.get(f"/desk/slip/{anna}?reprint=1").status_code == 404
    r = north.post("/desk", data={"csrf": token, "library": "north", "name": "",
                                  "service": "legimi", "card": "1000002",
                                  "action": "issue"}, follow_redirects=False)
    slip_url = r.headers["location"]
    issued = int(slip_url.rsplit("/", 1)[1])
    slip = north.get(slip_url)
    assert slip.status_code == 200 and "NORTH-CODE" in slip.text
    assert north.get(slip_url).status_code == 200  # printed again, right away
    assert north.get(f"/desk/slip/{anna}").status_code == 404
    other = site.client()
    login(other, "north-staff")
    assert other.get(slip_url).status_code == 404
    # The list's desk row leads to the desk's check of that card, not to the slip.
    listing = north.get("/requests?channel=desk").text
    assert f"/desk/slip/{issued}" not in listing
    assert "/desk?library=north&amp;card=1000002&amp;service=legimi" in listing
    page = north.get("/desk?library=north&card=1000002&service=legimi").text
    assert 'data-outcome="already_received"' in page and 'value="reprint"' in page
    # The reprint (audited) opens it again, labelled a reprint; the month is a name.
    r = north.post("/desk", data={"csrf": token, "library": "north", "card": "1000002",
                                  "service": "legimi", "action": "reprint",
                                  "code_id": str(issued)}, follow_redirects=False)
    assert r.status_code == 303
    slip = north.get(r.headers["location"]).text
    assert 'data-testid="slip-reprint"' in slip
    log = north.get("/audit?lang=pl").text
    assert f"kodu Legimi ({format_month(*parse_month(site.month), 'pl')})" in log
    # Another library's staff may not check North's card by the link either.
    south = site.client()
    login(south, "south-staff")
    assert south.get("/desk?library=north&card=1000002&service=legimi").status_code == 404


def test_a_slip_is_not_reopened_after_its_time(site, monkeypatch):
    from mailbot.web.views import desk as desk_view

    monkeypatch.setattr(desk_view, "SLIP_SECONDS", -1)  # over as soon as it is issued
    north = site.client()
    login(north, "north-staff")
    token = csrf_of(north.get("/desk").text)
    r = north.post("/desk", data={"csrf": token, "library": "north", "name": "",
                                  "service": "legimi", "card": "1000002",
                                  "action": "issue"}, follow_redirects=False)
    assert r.status_code == 303
    slip = north.get(r.headers["location"])
    assert slip.status_code == 404 and "NORTH-CODE" not in slip.text
