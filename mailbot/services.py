"""The e-book platforms mailbot hands out codes for: one table, read by everything that
names a service.

``id`` is what the database, the config (``services = [...]``) and ``--service`` hold;
``name`` what patrons and staff read; ``subject`` the word a patron writes in the subject
to ask for it (matched tolerantly: case, spaces and punctuation do not matter — see
mailbot.intake.subjects). Legimi and Empik Go are the two there are today.

Pure and tiny on purpose: the CLI's ``--service`` choices read it without loading the
config machinery.
"""

from __future__ import annotations

from typing import NamedTuple


class Service(NamedTuple):
    id: str  # "empik_go"
    name: str  # "Empik Go"
    subject: str  # "EMPIK GO"


SHIPPED: tuple[Service, ...] = (
    Service("legimi", "Legimi", "LEGIMI"),
    Service("empik_go", "Empik Go", "EMPIK GO"),
)

IDS: tuple[str, ...] = tuple(s.id for s in SHIPPED)
_BY_ID = {s.id: s for s in SHIPPED}


def name(service: str) -> str | None:
    """``empik_go`` -> ``Empik Go``; None for an id that is not a service."""
    known = _BY_ID.get(service)
    return known.name if known else None


def subject(service: str) -> str | None:
    """``empik_go`` -> ``EMPIK GO``, the subject that asks for it."""
    known = _BY_ID.get(service)
    return known.subject if known else None
