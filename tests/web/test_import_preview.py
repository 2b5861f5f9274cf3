"""Importing codes from the dashboard in real Chromium (issue 19, "imports that cannot
hurt"): upload, a preview that writes nothing (count, masked codes, a refused duplicate),
then "Potwierdź" or "Anuluj"; a reader file on the codes form is refused at the preview."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from mailbot.clock import parse_month
from mailbot.db.models import AuditLog, Code
from mailbot.respond.i18n import format_month
from tests.web.conftest import SHOTS


def _codes(sessions, like: str) -> int:
    with sessions() as s:
        return s.scalar(select(func.count(Code.id)).where(Code.code.like(like)))


def _upload_codes(page, name: str, body: bytes) -> None:
    form = page.locator("#import-codes")
    form.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": body})
    form.locator("button[type=submit]").click()


def test_codes_are_previewed_then_confirmed_or_cancelled(dashboard):
    # The preview shows the count, masked codes and the refused duplicate and writes
    # nothing; "Potwierdź" adds the codes and audits it; "Anuluj" leaves nothing.
    bot, server, page, context, dialogs, sessions = dashboard
    page.click("nav >> text=Import")
    body = b"kod\nLEG-NEW-0001\nLEG-NEW-0002\nLEG-NEW-0003\nLEG-NEW-0001\nLEG-0001-E2E\n"
    month = page.locator("#import-codes input[name=month]").input_value()  # its default
    _upload_codes(page, "legimi-luty.csv", body)
    preview = page.get_by_test_id("import-preview")
    expect(page.locator("h1")).to_have_text("Podgląd importu")
    expect(page.get_by_test_id("preview-file")).to_have_text("legimi-luty.csv")
    expect(page.get_by_test_id("preview-service")).to_have_text("Legimi")
    # The month as its name ("grudzień 2026"), never "2026-12".
    expect(page.get_by_test_id("preview-month")).to_have_text(
        format_month(*parse_month(month), "pl"))
    assert re.fullmatch(r"\w+ \d{4}", format_month(*parse_month(month), "pl"))
    expect(page.get_by_test_id("preview-count")).to_have_text("Zostaną dodane 3 kody.")
    expect(page.get_by_test_id("preview-codes").locator("li")).to_have_text(
        ["LEG…01", "LEG…02", "LEG…03"])
    refused = page.get_by_test_id("preview-refused")
    expect(refused).to_contain_text("2 wiersze zostaną odrzucone")
    expect(refused).to_contain_text("wiersz 5, kolumna „kod”: kod „LEG…01” jest już w wierszu 2")
    expect(refused).to_contain_text(
        "wiersz 6, kolumna „kod”: ten kod został już zaimportowany do puli tej biblioteki "
        "(Legimi")
    expect(preview).not_to_contain_text("LEG-NEW-0001")
    page.screenshot(path=SHOTS / "import-preview.png", full_page=True)
    assert _codes(sessions, "LEG-NEW-%") == 0
    # On a phone the preview fits the screen: nothing scrolls sideways.
    for width, name in ((768, "import-preview-tablet.png"), (390, "import-preview-phone.png")):
        page.set_viewport_size({"width": width, "height": 860})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=SHOTS / name, full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})

    page.get_by_test_id("preview-confirm").click()
    result = page.get_by_test_id("import-result")
    expect(result).to_contain_text("legimi-luty.csv: dodano 3 kody (Legimi")
    expect(result).to_contain_text("Pominięto 2 odrzucone wiersze.")
    assert _codes(sessions, "LEG-NEW-%") == 3
    with sessions() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "import_codes")).one()
        assert (entry.user_name, entry.args["n"], entry.args["refused"]) == \
            ("bibliotekarka", 3, 2)
    expect(page.locator("section.panel")).to_contain_text("legimi-luty.csv: dodano 3 kody")

    # Cancel: nothing imported, nothing audited.
    _upload_codes(page, "drugi.csv", b"kod\nLEG-CANCEL-01\n")
    expect(page.get_by_test_id("preview-count")).to_have_text("Zostanie dodany 1 kod.")
    page.get_by_test_id("preview-cancel").click()
    expect(page.get_by_test_id("import-result")).to_contain_text("import anulowany")
    assert _codes(sessions, "LEG-CANCEL-%") == 0
    with sessions() as s:
        assert s.scalar(select(func.count(AuditLog.id)).where(
            AuditLog.action == "import_codes")) == 1


def test_a_reader_file_on_the_codes_form_is_refused_at_the_preview(dashboard):
    bot, server, page, context, dialogs, sessions = dashboard
    page.click("nav >> text=Import")
    with sessions() as s:
        before = s.scalar(select(func.count(Code.id)))
    readers = ("numer_karty;imie;nazwisko;email\n"
               "0990001;Alicja;Łada;ala@patron.test\n0990002;Żaneta;Wróbel;z@patron.test\n")
    _upload_codes(page, "czytelnicy.csv", readers.encode())
    error = page.get_by_test_id("import-error")
    expect(error).to_contain_text("Nic nie zaimportowano.")
    expect(error).to_contain_text("to wygląda na plik czytelników")
    expect(error).to_contain_text("zaimportuj go w formularzu „Czytelnicy”")
    expect(page.get_by_test_id("preview-confirm")).to_have_count(0)
    page.screenshot(path=SHOTS / "import-reader-file-refused.png", full_page=True)
    with sessions() as s:
        assert s.scalar(select(func.count(Code.id))) == before
