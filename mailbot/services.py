"""The e-book platforms mailbot hands out codes for, as data: the two shipped ones (Legimi,
Empik Go) and whatever a config's ``[[services]]`` tables add (WBP Poznań's ebookpoint
BIBLIO), read by everything that names a service.

``id`` is what the database, the config (``services = [...]``) and ``--service`` hold;
``name`` what patrons and staff read; ``subjects`` the words a patron writes in the
subject to ask for it (matched tolerantly: case, accents, spaces and punctuation do not
matter — see mailbot.intake.subjects); ``activation_url`` where the code is entered,
unless the library has its own; ``instructions`` the activation steps the issued reply
shows, per language (none: the reply's own steps, generic for a platform it does not
know); ``one_a_month``: a code of it counts toward "one code a month across platforms"
(False: it is counted only against itself).

A ``Catalogue`` is one config's services, built from its settings
(``Settings.catalogue``) and handed to what needs it: there is no module-level list that
two settings in one process would fight over. ``SHIPPED_CATALOGUE`` is the catalogue of
a config without ``[[services]]``.

Pure and tiny on purpose: the CLI imports it without loading the config machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Steps(NamedTuple):
    """A service's activation steps, per language (a reply's ``service_steps``: each
    language's template reads its own; None there: the template's own steps)."""

    pl: tuple[str, ...] | None = None
    en: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Service:
    id: str  # "empik_go"
    name: str  # "Empik Go"
    subjects: tuple[str, ...]  # ("EMPIK GO",): the first is the one replies suggest
    activation_url: str | None = None
    # (language, steps) pairs: the steps, one a line, the issued reply shows in that
    # language. A tuple, not a dict: a Service is hashable (reply caches key on it).
    instructions: tuple[tuple[str, str], ...] = ()
    one_a_month: bool = True

    @property
    def subject(self) -> str:
        """``EMPIK GO``: the subject that asks for it, as replies suggest it."""
        return self.subjects[0]

    def steps(self, lang: str) -> tuple[str, ...] | None:
        """The activation steps in ``lang``, one per line; None: the reply's own."""
        for code, text in self.instructions:
            if code == lang:
                return tuple(line.strip() for line in text.strip().splitlines() if line.strip())
        return None


SHIPPED: tuple[Service, ...] = (
    Service("legimi", "Legimi", ("LEGIMI",), "https://www.legimi.pl/"),
    Service("empik_go", "Empik Go", ("EMPIK GO",), "https://www.empikgo.com/"),
)
IDS: tuple[str, ...] = tuple(s.id for s in SHIPPED)  # the shipped ids


@dataclass(frozen=True)
class Catalogue:
    """One config's services, in order: the shipped ones first, then those
    ``[[services]]`` adds. Hashable and comparable (it is part of cache keys)."""

    services: tuple[Service, ...] = SHIPPED
    _by_id: dict[str, Service] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.services})
        # Hashed for every mail's subject match (a cache key): worked out once.
        object.__setattr__(self, "_hash", hash(self.services))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[type, tuple[tuple[Service, ...]]]:
        # Rebuilt in a worker process, not copied: a string's hash differs there.
        return (Catalogue, (self.services,))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.services)

    def get(self, service: str | None) -> Service | None:
        return self._by_id.get(service or "")

    def __contains__(self, service: object) -> bool:
        return service in self._by_id

    def name(self, service: str) -> str | None:
        """``empik_go`` -> ``Empik Go``; None for an id that is not a service."""
        known = self._by_id.get(service)
        return known.name if known else None

    def subject(self, service: str) -> str | None:
        """``empik_go`` -> ``EMPIK GO``, the subject that asks for it."""
        known = self._by_id.get(service)
        return known.subject if known else None

    def counted_across(self, service: str) -> bool:
        """Does a code of ``service`` count toward one code a month across platforms? (An
        unknown id does, as every service did before ``one_a_month``.)"""
        known = self._by_id.get(service)
        return known.one_a_month if known else True

    def counted_against(self, service: str, *, per_service: bool) -> str | None:
        """The codes of the month a request for ``service`` is counted against: None for
        every code of the services counted across (the rule "one code a month across
        platforms"), else ``service``'s own (one_code_per_month = "per_service", or a
        service with one_a_month = false)."""
        return service if per_service or not self.counted_across(service) else None


SHIPPED_CATALOGUE = Catalogue()
