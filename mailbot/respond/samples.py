"""A sample reply context for each outcome, with one library's settings: what the text
preview on the dashboard and ``mailbot check`` render a library's reply texts with.

The library's own values (name, contact, activation pages, penalty, window) come from its
settings through decide.reply_context, as a real reply's do; so does whether the reply
says staff were told (pool_not_ready's ``staff_told``: a staff address, the library's or
the global one, and a mailbox to send the alert from, as decide.runner asks it). Only the
patron and the outcome's reasons are made up. Times are in the library's zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from mailbot.clock import add_months, month_of
from mailbot.config import LibrarySettings, Settings
from mailbot.decide.context import reply_context
from mailbot.respond.i18n import service_name
from mailbot.respond.staff_alert import staff_can_be_told
from mailbot.respond.variables import CONTEXT_VARIABLES

SAMPLE_CODE = "LGM-7Q2X-9KD4-PL"
SAMPLE_CARD = "0012345"
SAMPLE_NAME = "Anna Kowalska"


def sample_context(library: LibrarySettings, tz: Any, outcome: str, *, now: datetime,
                   settings: Settings, service: str = "legimi") -> dict[str, Any]:
    """The context ``outcome``'s reply would get this month (the month of ``now`` in the
    library's zone), for a made-up patron asking for ``service``. ``settings``: the whole
    configuration ``library`` is in, for what a reply knows beyond the library's own table
    (the global staff address, the library's mailboxes)."""
    from mailbot.rules.offered import offer

    year, mon = month_of(now, tz)
    received = now.astimezone(tz).replace(microsecond=0)
    catalogue = settings.catalogue
    ctx = reply_context(library, tz, year, mon, service=service,
                        subject=catalogue.subject(service) or service.upper(),
                        received_at=received, card_number=SAMPLE_CARD,
                        patron_name=SAMPLE_NAME, catalogue=catalogue)
    # The code received earlier: of another service the library offers (else any other).
    other = next((s for s in (*library.services, *catalogue.ids) if s != service), "legimi")
    blocked_year, blocked_month = add_months(year, mon, max(library.penalty_months, 1))
    extras: dict[str, Any] = {
        "code": SAMPLE_CODE,
        "previous_service": other,
        "previous_service_name": service_name(other, catalogue),
        "previous_issued_at": received - timedelta(days=1) if received.day > 1 else received,
        "balance_due": Decimal("12.50"),
        "overdue_items": 2,
        "valid_until": date(year, mon, 1) - timedelta(days=1),
        "blocked_until": date(blocked_year, blocked_month, 1),
        "candidates": [SAMPLE_CARD, "0098765"],
        "min_age": library.min_age(service) or 16,
        "year": year,
        "since": None,
        "verdict": "debt",
        "before_window": False,
        "max_codes": library.max_codes_per_address_per_month or 3,
        # The services the library offers, and those besides the one asked for.
        "offered": tuple(offer(s, catalogue) for s in library.services),
        "other_services": tuple(offer(s, catalogue) for s in library.services
                                if s != service),
        "staff_told": staff_can_be_told(settings, library.id),
        # A library that keeps codes back (mailbot.quotas): its refusal says for whom and
        # until when, so the preview shows that wording.
        **_quota_sample(library, tz, year, mon),
    }
    spec = CONTEXT_VARIABLES.get(outcome)
    wanted = (spec.required | spec.optional) if spec else frozenset(extras)
    ctx.update({k: v for k, v in extras.items() if k in wanted and ctx.get(k) is None})
    return ctx


def _quota_sample(library: LibrarySettings, tz: Any, year: int, mon: int) -> dict[str, Any]:
    """pool_exhausted's quota variables as the library's quotas would give them while
    they hold (none: the library keeps no codes back)."""
    from mailbot import quotas

    q = library.quotas
    if not q.active:
        return {}
    kept = tuple(part for part, on in (("desk", bool(q.desk_share or q.desk_codes)),
                                       ("first_time", q.first_time_codes > 0)) if on)
    return {"quota_kept": kept, "quota_release_at": quotas.release_at(q, tz, year, mon)}
