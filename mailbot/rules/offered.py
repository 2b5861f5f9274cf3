"""The services a library offers (``services`` in its table): a request for a platform the
library does not buy codes for is refused as ``service_not_offered``, and the reply names
the one(s) it does offer, with the subject to write.

It is the first rule of every chain, before the window and the card checks: whatever the
card, the day or the pool, the answer to "EMPIK GO" at a Legimi-only library is the same,
and telling such a patron "too early, write again on the 1st" (or "your card is not valid")
would only send them back for a code that will never come. Reading the card first would
also refuse them for a reason that does not matter.
"""

from __future__ import annotations

from typing import NamedTuple

from mailbot.outcomes import Outcome
from mailbot.respond.i18n import service_name
from mailbot.rules.base import Facts, Hit
from mailbot.services import SHIPPED_CATALOGUE, Catalogue



class Offer(NamedTuple):
    """A service as a reply names it (a tuple: the reply shape cache keys on it)."""

    service: str
    name: str  # "Empik Go"
    keyword: str  # the subject that asks for it: "EMPIK GO"


def offer(service: str, catalogue: Catalogue = SHIPPED_CATALOGUE) -> Offer:
    return Offer(service, service_name(service, catalogue),
                 catalogue.subject(service) or service.upper())


class ServiceNotOffered:
    name = "service_not_offered"
    description = "The library does not offer the service the subject asks for."

    def check(self, facts: Facts) -> Hit | None:
        offered = facts.library.services
        if facts.service in offered:
            return None
        return Hit(Outcome.SERVICE_NOT_OFFERED, "service_not_offered",
                   {"offered": tuple(offer(s, facts.catalogue) for s in offered)},
                   args={"service": facts.service,
                         "offered": ", ".join(service_name(s, facts.catalogue)
                                              for s in offered)})
