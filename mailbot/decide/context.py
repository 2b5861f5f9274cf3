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


def reply_context(library: LibrarySettings, tz: Any, year: int, month: int, *, service: str,
                  subject: str, received_at: datetime, card_number: str | None,
                  patron_name: str | None) -> dict[str, Any]:
    """What every reply template may use (render.CONTEXT_VARIABLES), for one month."""
    return {
        **month_context(library, tz, year, month, service),
        "subject": subject,
        "received_at": received_at.astimezone(tz),
        "card_number": card_number,
        "patron_name": patron_name,
        "code": None,
    }


@lru_cache(maxsize=256)
def month_context(library: LibrarySettings, tz: Any, year: int, month: int,
                  service: str) -> Mapping[str, Any]:
    """The part of reply_context that is the same for every reply of a library, month and
    service."""
    return MappingProxyType({
        "library_name": library.name,
        "service": service,
        "service_name": service_name(service),
        "month": datetime(year, month, 1).date(),
        "library_contact": library.contact,
        "next_window": next_window(library, tz, year, month),
        "window_opens": window_opens(library, tz, year, month),
        "activation_url": getattr(library, f"activation_url_{service}", None),
        "deadline": (month_end(year, month, tz) - timedelta(days=1)).date(),
        "penalty_months": library.penalty_months,
    })


def decided_context(library: LibrarySettings, tz: Any, year: int, month: int, *,
                    service: str, subject: str, received_at: datetime,
                    card_number: str | None, patron_name: str | None,
                    outcome_context: Mapping[str, Any]) -> dict[str, Any]:
    """The reply context of a decided request: reply_context with what its outcome adds
    (the code, a refusal's reasons, the code received earlier this month)."""
    ctx = reply_context(library, tz, year, month, service=service, subject=subject,
                        received_at=received_at, card_number=card_number,
                        patron_name=patron_name)
    ctx.update(outcome_context)
    if "previous_service" in ctx:
        ctx["previous_service_name"] = service_name(ctx["previous_service"])
        ctx["previous_issued_at"] = ctx["previous_issued_at"].astimezone(tz)
        ctx["activation_url"] = getattr(library, f"activation_url_{ctx['previous_service']}",
                                        None)
    return ctx
