"""The sample reply contexts of the text preview and ``mailbot check``: a library's
settings give the sample what a real reply of that library would get."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mailbot.config import settings_from_dict
from mailbot.respond.render import render_plainly
from mailbot.respond.samples import sample_context

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
TOLD_PL = "Pracownicy biblioteki zostali o tym powiadomieni."
TOLD_EN = "The library staff have been told."


def _settings(*, own: str | None = None, overall: str | None = None,
              mailbox: bool = True) -> Any:
    library: dict[str, Any] = {"id": "a", "name": "Biblioteka A"}
    if own:
        library["staff_email"] = own
    data: dict[str, Any] = {"libraries": [library], "mailboxes": [
        {"library": "a", "address": "ebooki@a.example.org", "username": "u",
         "password": "secret"}] if mailbox else []}
    if overall:
        data["staff_email"] = overall
    return settings_from_dict(data)


def _pool_not_ready(settings: Any) -> tuple[dict[str, Any], str]:
    lib = settings.library("a")
    ctx = sample_context(lib, settings.library_tz("a"), "pool_not_ready", now=NOW,
                         settings=settings)
    text = render_plainly("pool_not_ready", ctx, languages=lib.languages).text
    return ctx, " ".join(text.split())


@pytest.mark.parametrize(("own", "overall"), [("kierownik@a.example.org", None),
                                              (None, "dyzur@example.org")])
def test_pool_not_ready_says_staff_were_told_when_a_staff_address_is_set(own, overall):
    # The library's own staff_email or the global one: the real run alerts staff and the
    # reply says so, so the preview's sample says so too, in both languages.
    ctx, text = _pool_not_ready(_settings(own=own, overall=overall))
    assert ctx["staff_told"] is True
    assert TOLD_PL in text and TOLD_EN in text


def test_pool_not_ready_says_nothing_of_staff_without_an_address_or_a_mailbox():
    # No staff address, or no mailbox to send the alert from: nobody is told (as
    # decide.runner asks respond.staff_alert), and the sample's reply does not claim it.
    for settings in (_settings(), _settings(own="kierownik@a.example.org", mailbox=False)):
        ctx, text = _pool_not_ready(settings)
        assert ctx["staff_told"] is False
        assert TOLD_PL not in text and TOLD_EN not in text


def _pool_exhausted(quotas: dict[str, Any] | None) -> str:
    library: dict[str, Any] = {"id": "a", "name": "Biblioteka A"}
    if quotas:
        library["quotas"] = quotas
    settings = settings_from_dict({"libraries": [library], "mailboxes": []})
    lib = settings.library("a")
    ctx = sample_context(lib, settings.library_tz("a"), "pool_exhausted", now=NOW,
                         settings=settings)
    return " ".join(render_plainly("pool_exhausted", ctx, languages=lib.languages).text.split())


def test_the_preview_of_a_library_keeping_codes_back_shows_its_quota_wording():
    # Half for the desk and 3 for first-timers, released on the 15th at 12:00: the
    # preview shows the refusal such a library's patrons get, not "the pool ran out".
    text = _pool_exhausted({"desk_share": 0.5, "first_time_codes": 3, "release_day": 15,
                            "release_time": "12:00"})
    assert ("zachowuje do wydania na miejscu, w bibliotece oraz dla czytelników, którzy "
            "jeszcze nigdy nie otrzymali od niej kodu – do 15 listopada 2026") in text, text
    assert "została już wyczerpana" not in text
    only_first = _pool_exhausted({"first_time_codes": 3})
    assert "zachowuje dla czytelników" in only_first and "Od tego momentu" not in only_first
    assert "została już wyczerpana" in _pool_exhausted(None)
