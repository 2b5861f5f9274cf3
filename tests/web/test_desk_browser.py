"""The walk-in desk's powers in real headless Chromium (issue 19): "issue anyway" with a
reason over a refusal staff may overrule, the reprint of a code a card already has, and
the desk's codes found on the requests list (by channel, by name, by card prefix).

Screenshots: docs/screenshots/desk-override.png, desk-reprint.png, requests-desk.png."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from mailbot.db.models import AuditLog, LedgerEntry
from tests.botenv import request_mail
from tests.web.conftest import SHOTS


def _check(page, card: str, name: str, service: str = "legimi") -> None:  # noqa: ANN001
    page.fill("form.desk-form input[name=card]", card)
    page.fill("form.desk-form input[name=name]", name)
    page.check(f"form.desk-form input[name=service][value={service}]")
    page.click("button[value=check]")


def test_desk_override_needs_a_reason_issues_prints_audits_and_is_listed(dashboard,
                                                                         imap_user):
    # Jan owes 9.99 and says he has just paid: the desk refuses (debt) and offers "Wydaj
    # mimo to"; without a reason nothing is issued (the browser asks, and so does the
    # server); with one, the code comes from the pool, the slip prints, the audit log
    # keeps the reason and the overruled refusal, and the requests list shows the desk's
    # row, found by channel, by name without Polish letters and by the card's start.
    bot, server, page, context, dialogs, sessions = dashboard
    page.click("nav >> text=Wydanie przy ladzie")
    _check(page, "0990003", "Jan Dług")
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_attribute("data-outcome", "debt")
    override = page.get_by_test_id("override")
    expect(page.get_by_test_id("overruled")).to_have_text("zadłużenie")
    override.locator("textarea[name=reason]").fill("kara zapłacona przy ladzie")
    page.screenshot(path=SHOTS / "desk-override.png", full_page=True)
    # On a phone the form fits the screen: nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(override.locator("button[value=override]")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=SHOTS / "desk-override-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})
    override.locator("textarea[name=reason]").fill("")
    # No reason: the browser keeps the form (the field is required) …
    override.locator("button[value=override]").click()
    assert override.locator("textarea[name=reason]").evaluate("e => e.validity.valueMissing")
    # … and the server refuses too, if the browser's check is bypassed.
    override.locator("textarea[name=reason]").evaluate("e => e.removeAttribute('required')")
    override.locator("button[value=override]").click()
    expect(page.locator(".flash.error")).to_have_text("Podaj powód wydania kodu mimo odmowy.")
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-outcome", "debt")
    with sessions() as s:
        assert s.scalars(select(LedgerEntry)).all() == []
    page.get_by_test_id("override").locator("textarea[name=reason]").fill(
        "kara zapłacona przy ladzie")
    page.get_by_test_id("override").locator("button[value=override]").click()
    expect(page.get_by_test_id("slip-code")).to_have_text("LEG-0001-E2E")
    expect(page.locator(".slip")).to_contain_text("Jan Dług")
    expect(page.locator(".slip")).to_contain_text("0990003")
    with sessions() as s:
        entry = s.scalars(select(LedgerEntry)).one()
        assert (entry.channel, entry.card_number, entry.request_id) == ("desk", "0990003",
                                                                         None)
        audit = s.scalars(select(AuditLog)).one()
        assert (audit.action, audit.user_name, audit.code_id) == (
            "desk_override", "bibliotekarka", entry.code_id)
        assert audit.args == {"service": "legimi", "card": "0990003", "outcome": "debt",
                              "overruled": "debt", "reason": "kara zapłacona przy ladzie"}
        assert "LEG-0001-E2E" not in audit.detail  # codes never go into logs
    page.click("nav >> text=Dziennik działań")
    log = page.locator("table.list")
    expect(log).to_contain_text("wydanie przy ladzie mimo odmowy")
    expect(log).to_contain_text("kara zapłacona przy ladzie")

    # An e-mail request beside it, so the channel filter has something to leave out.
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    assert bot.run_once() == 0
    page.click("nav >> text=Zgłoszenia")
    email_rows = page.locator("table.list tbody tr:has(a[href^='/requests/'])")
    expect(email_rows).to_have_count(1)
    desk_rows = page.get_by_test_id("desk-row")
    expect(desk_rows).to_have_count(1)
    expect(desk_rows).to_contain_text("przy ladzie")
    expect(desk_rows).to_contain_text("mimo odmowy")
    expect(desk_rows).to_contain_text("0990003")
    expect(desk_rows).to_contain_text("Jan Dług")
    page.screenshot(path=SHOTS / "requests-desk.png", full_page=True)
    page.fill("input[name=q]", "099000")  # the start of both cards
    page.click("form.filters button[type=submit]")
    expect(page.get_by_test_id("desk-row")).to_have_count(1)
    expect(email_rows).to_have_count(1)
    for search in ("dlug", "JAN DŁUG", "0990003", "jan@patron"):
        page.fill("input[name=q]", search)
        page.click("form.filters button[type=submit]")
        expect(page.get_by_test_id("desk-row")).to_have_count(1)
        expect(email_rows).to_have_count(0)
    for search in ("0990001", "łada", "ALA@"):
        page.fill("input[name=q]", search)
        page.click("form.filters button[type=submit]")
        expect(page.get_by_test_id("desk-row")).to_have_count(0)
        expect(email_rows).to_have_count(1)
    page.fill("input[name=q]", "%")  # a literal percent sign: nobody's
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.list tbody")).to_contain_text("Brak zgłoszeń")
    page.fill("input[name=q]", "")
    page.select_option("select[name=channel]", "email")
    page.click("form.filters button[type=submit]")
    expect(page.get_by_test_id("desk-row")).to_have_count(0)
    expect(email_rows).to_have_count(1)
    page.select_option("select[name=channel]", "desk")
    page.click("form.filters button[type=submit]")
    expect(page.get_by_test_id("desk-row")).to_have_count(1)
    # The row leads to the desk's check of that card (the code is not on the list, nor
    # a link away): from there, the audited reprint opens the slip again.
    page.get_by_test_id("desk-row").locator("a", has_text="ponowny wydruk").click()
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-outcome",
                                                             "already_received")
    expect(page.locator("input[name=card]").first).to_have_value("0990003")
    page.get_by_test_id("received").locator("button[value=reprint]").click()
    expect(page.get_by_test_id("slip-code")).to_have_text("LEG-0001-E2E")
    expect(page.get_by_test_id("slip-reprint")).to_be_visible()
    assert dialogs == []


def test_desk_reprints_the_code_a_card_already_has_this_month(dashboard, imap_user):
    # Alicja got her code by e-mail: at the desk she is "already received", the page shows
    # that code's service, month and channel and "Drukuj ponownie" opens its slip (the
    # same code), audited; a forged reprint of another card's code is "not found".
    bot, server, page, context, dialogs, sessions = dashboard
    raw, _ = request_mail("ala@patron.test", "LEGIMI", "Dzień dobry, Alicja Łada 0990001")
    imap_user.append(raw, internaldate=bot.window() + timedelta(seconds=3))
    assert bot.run_once() == 0
    [req] = bot.requests()
    assert req.outcome == "issued"
    emailed = req.code.code
    page.click("nav >> text=Wydanie przy ladzie")
    _check(page, "0990002", "Żaneta Wróbel")
    page.click("button[value=issue]")
    expect(page.get_by_test_id("slip-code")).not_to_have_text(emailed)
    with sessions() as s:
        other = s.scalar(select(LedgerEntry.code_id).where(
            LedgerEntry.card_number == "0990002"))

    page.click("nav >> text=Wydanie przy ladzie")
    _check(page, "0990001", "", service="empik_go")
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-outcome",
                                                             "already_received")
    received = page.get_by_test_id("received")
    expect(received).to_contain_text("Legimi")
    expect(received).to_contain_text(bot.month)
    expect(received).to_contain_text("e-mail")
    expect(page.get_by_test_id("override")).to_have_count(0)
    page.screenshot(path=SHOTS / "desk-reprint.png", full_page=True)
    received.locator("button[value=reprint]").click()
    expect(page.get_by_test_id("slip-code")).to_have_text(emailed)
    expect(page.get_by_test_id("slip-reprint")).to_be_visible()
    expect(page.locator(".slip")).to_contain_text("Alicja Łada")
    page.screenshot(path=SHOTS / "slip-reprint.png", full_page=True)
    with sessions() as s:
        [audit] = s.scalars(select(AuditLog).where(AuditLog.action == "desk_reprint"))
        assert (audit.code_id, audit.request_id, audit.args) == (
            req.code.id, req.id, {"service": "legimi", "card": "0990001",
                                  "month": bot.month})

    # The same form with Żaneta's code id: not this card's code, nothing printed.
    page.click("nav >> text=Wydanie przy ladzie")
    _check(page, "0990001", "")
    page.get_by_test_id("received").locator("input[name=code_id]").evaluate(
        f"e => e.value = '{other}'")
    page.get_by_test_id("received").locator("button[value=reprint]").click()
    expect(page.locator("body")).not_to_contain_text("LEG-0002-E2E")
    expect(page.get_by_test_id("slip-code")).to_have_count(0)
    with sessions() as s:
        assert len(s.scalars(select(AuditLog).where(
            AuditLog.action == "desk_reprint")).all()) == 1
    assert dialogs == []
