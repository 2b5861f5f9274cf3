"""The month a code import is for when staff do not say: this month until the 19th, the
next from the 20th on, in the library's time zone (mailbot.imports.months); and the
dashboard's import form offers it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mailbot.imports.months import default_import_month
from tests.web.webenv import login, make_site

WAW = ZoneInfo("Europe/Warsaw")


def test_from_the_20th_the_next_month_is_offered_in_library_time() -> None:
    assert default_import_month(datetime(2026, 11, 19, 21, 0, tzinfo=UTC), WAW) == "2026-11"
    # 22:59 UTC on the 19th is already the 20th in Warsaw.
    assert default_import_month(datetime(2026, 11, 19, 23, 0, tzinfo=UTC), WAW) == "2026-12"
    assert default_import_month(datetime(2026, 12, 28, 12, 0, tzinfo=UTC), WAW) == "2027-01"
    assert default_import_month(datetime(2027, 1, 1, 0, 30, tzinfo=UTC), WAW) == "2027-01"


def test_the_import_form_offers_the_next_month_late_in_the_month(tmp_path) -> None:
    site = make_site(tmp_path)
    assert site.add_user("anna", "north") == 0
    for now, month in ((datetime(2026, 12, 5, 9, 0, tzinfo=UTC), "2026-12"),
                       (datetime(2026, 12, 21, 9, 0, tzinfo=UTC), "2027-01")):
        client = site.client(clock=lambda now=now: now)
        assert login(client, "anna").status_code == 200
        page = client.get("/imports").text
        (offered,) = re.findall(r'name="month" value="([^"]*)"', page)
        assert offered == month
