"""The reply template's context: what every reply may say, and a decided request's own.

``reply_context`` is what every reply template may use (render.CONTEXT_VARIABLES) for one
library, month and service; the dashboard's override and the reminders use it too. The
part shared by a month's replies is worked out once (``month_context``), not for each of a
burst's thousands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from mailbot.clock import month_end
from mailbot.config import LibrarySettings
from mailbot.respond.i18n import service_name
from mailbot.rules.window import next_window, window_opens
from mailbot.services import SHIPPED_CATALOGUE, Catalogue, Steps
from mailbot.validity import text_for as validity_text

# The subjects the replies have always suggested ("LEGIMI albo EMPIK GO"): a library that
# offers just these keeps its texts as they were (service_subjects None).
_SHIPPED_SUBJECTS = ("LEGIMI", "EMPIK GO")


def reply_context(library: LibrarySettings, tz: Any, year: int, month: int, *, service: str,
                  subject: str, received_at: datetime, card_number: str | None,
                  patron_name: str | None,
                  catalogue: Catalogue = SHIPPED_CATALOGUE) -> dict[str, Any]:
    """What every reply template may use (render.CONTEXT_VARIABLES), for one month.
    ``catalogue``: the config's services (Settings.catalogue), for their names, subjects,
    activation pages and steps."""
    return {
        **month_context(library, tz, year, month, service, catalogue),
        "subject": subject,
        "received_at": received_at.astimezone(tz),
        "card_number": card_number,
        "patron_name": patron_name,
        "code": None,
    }


@lru_cache(maxsize=256)
def month_context(library: LibrarySettings, tz: Any, year: int, month: int,
                  service: str, catalogue: Catalogue = SHIPPED_CATALOGUE) -> Mapping[str, Any]:
    """The part of reply_context that is the same for every reply of a library, month and
    service."""
    return MappingProxyType({
        "library_name": library.name,
        "service": service,
        "service_name": service_name(service, catalogue),
        "month": datetime(year, month, 1).date(),
        "library_contact": library.contact,
        "next_window": next_window(library, tz, year, month),
        "window_opens": window_opens(library, tz, year, month),
        "activation_url": library.activation_url(service, catalogue),
        **service_texts(library, service, catalogue),
        "deadline": (month_end(year, month, tz) - timedelta(days=1)).date(),
        # The penalty the issued reply warns of (0: none) and the validity sentence of
        # the month's codes (None: the shipped one): mailbot.penalty, mailbot.validity.
        **_penalty_words(library),
        "validity": validity_text(library.validity, month),
    })


def _penalty_words(library: LibrarySettings) -> dict[str, int]:
    rule = library.penalty_rule
    return {"penalty_months": rule.block_months, "penalty_misses": rule.misses,
            "penalty_within_months": rule.within_months}


def service_texts(library: LibrarySettings, service: str,
                  catalogue: Catalogue) -> dict[str, Any]:
    """What the replies say of the services beyond a name: ``service_steps`` (Steps: per
    language the activation steps a [[services]] table gives; None: the reply's own) and
    ``service_subjects`` (the subjects of the library's services, for "write LEGIMI,
    EMPIK GO or EBOOKPOINT in the subject"; None for the shipped two, whose wording the
    templates have)."""
    known = catalogue.get(service)
    steps = Steps(known.steps("pl"), known.steps("en")) if known is not None else None
    subjects = tuple(catalogue.subject(s) or s.upper() for s in library.services)
    return {"service_steps": steps if steps and any(steps) else None,
            "service_subjects": None if subjects == _SHIPPED_SUBJECTS else subjects}


def decided_context(library: LibrarySettings, tz: Any, year: int, month: int, *,
                    service: str, subject: str, received_at: datetime,
                    card_number: str | None, patron_name: str | None,
                    outcome_context: Mapping[str, Any],
                    catalogue: Catalogue = SHIPPED_CATALOGUE) -> dict[str, Any]:
    """The reply context of a decided request: reply_context with what its outcome adds
    (the code, a refusal's reasons, the code received earlier this month)."""
    ctx = reply_context(library, tz, year, month, service=service, subject=subject,
                        received_at=received_at, card_number=card_number,
                        patron_name=patron_name, catalogue=catalogue)
    ctx.update(outcome_context)
    if "previous_service" in ctx:
        # The code received earlier may be of another service: its name, page and steps.
        previous = ctx["previous_service"]
        ctx["previous_service_name"] = service_name(previous, catalogue)
        ctx["previous_issued_at"] = ctx["previous_issued_at"].astimezone(tz)
        ctx["activation_url"] = library.activation_url(previous, catalogue)
        ctx["service_steps"] = service_texts(library, previous, catalogue)["service_steps"]
    if "unactivated" in ctx:  # blocked: the codes that were not activated, by name
        ctx["unactivated"] = tuple(
            item._replace(service_name=service_name(item.service, catalogue)
                          if item.service else None)
            for item in ctx["unactivated"])
    return ctx
