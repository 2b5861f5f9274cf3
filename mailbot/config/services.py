"""``[[services]]``: the e-book platforms a config adds to the shipped Legimi and Empik Go,
or what it changes of those two, as data (mailbot.services).

Each table adds a service, or, with the id of a shipped one (``legimi``, ``empik_go``),
changes the fields it gives of that one: a config without ``[[services]]`` knows exactly
the two shipped services, and one that adds ebookpoint still has them. (Adding, not
replacing: a library drops a platform it does not buy with its own ``services = [...]``;
a consortium's file would otherwise have to restate Legimi and Empik Go to add a third.)

``catalogue`` merges them into the one ``Catalogue`` every part of mailbot is handed
(``Settings.catalogue``). mailbot.config.load reads the tables as it reads every table,
then calls the two functions at the end of this module: ``offering_every_service`` (a
library without ``services`` offers them all) and ``check_services`` (the rules between
tables and the libraries' keys that name services).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any

from mailbot.config.checks import CLOSED, After, Bool, NotNegative, Str
from mailbot.errors import ConfigError
from mailbot.services import IDS, SHIPPED, Catalogue, Service

if TYPE_CHECKING:
    from mailbot.config.sections import Settings

# At most 20 characters: the database's service columns are String(20).
_ID = re.compile(r"[a-z][a-z0-9_]{0,19}")


def _service_id(value: str) -> str:
    # What the database, --service and a library's services = [...] hold: short,
    # lowercase ASCII, safe in a URL, a file name and a shell ("ebookpoint", "empik_go").
    if not _ID.fullmatch(value):
        raise ValueError(f"must be a short id (at most 20) of lowercase letters, digits and "
                         f"_, starting with a letter (e.g. \"ebookpoint\"), not {value!r}")
    return value


def _service_ids(names: tuple[str, ...]) -> tuple[str, ...]:
    # Which of them are services is known once every [[services]] table is read
    # (mailbot.config.load): here only what one list can be wrong in by itself.
    if not names:
        raise ValueError("needs at least one service")
    if len(set(names)) != len(names):
        raise ValueError(f"names a service twice: {list(names)!r}")
    return names


def _pairs(table: dict[str, object]) -> tuple[tuple[str, object], ...]:
    # A TOML table kept as (key, value) pairs: the settings stay hashable.
    return tuple(table.items())


ServiceId = Annotated[Str, After(_service_id)]
# A library's services = [...]: ids of the config's services.
ServiceIds = Annotated[tuple[Str, ...], After(_service_ids)]
# A value per service id, e.g. min_ages = { ebookpoint = 13 } (read as (id, value) pairs;
# which ids are services is checked by mailbot.config.load).
AgesByService = Annotated[dict[Str, NotNegative], After(_pairs)]
UrlsByService = Annotated[dict[Str, Str], After(_pairs)]


@dataclass(frozen=True)
class ServiceTexts:
    """The activation steps of a service's issued reply, per language: one step a line
    (a TOML multi-line string). A language left out keeps the reply's own steps."""

    pl: Str | None = None
    en: Str | None = None

    __pydantic_config__ = CLOSED


@dataclass(frozen=True)
class ServiceSettings:
    """One ``[[services]]`` table. Left out (None): the shipped service's value for a
    shipped id; for a new one, ``subjects`` is the name in capitals, ``activation_url``
    none (libraries give theirs), ``one_a_month`` true."""

    id: ServiceId
    name: Str | None = None  # shown to patrons and staff; required for a new id
    subjects: tuple[Str, ...] | None = None  # what a patron writes in the subject
    activation_url: Str | None = None  # where the code is entered; a library's own wins
    instructions: ServiceTexts | None = None
    one_a_month: Bool | None = None  # counts toward one code a month across platforms

    __pydantic_config__ = CLOSED


def catalogue(configured: tuple[ServiceSettings, ...]) -> Catalogue:
    """The shipped services with ``configured`` laid over them: a shipped id's table
    changes what it gives, a new id is added after the shipped ones, in file order."""
    found: dict[str, Service] = {s.id: s for s in SHIPPED}
    for table in configured:
        base = found.get(table.id) or Service(table.id, table.name or table.id,
                                              ((table.name or table.id).upper(),))
        changes: dict[str, object] = {}
        if table.name is not None:
            changes["name"] = table.name
        if table.subjects:
            changes["subjects"] = tuple(table.subjects)
        if table.activation_url is not None:
            changes["activation_url"] = table.activation_url
        if table.one_a_month is not None:
            changes["one_a_month"] = table.one_a_month
        if table.instructions is not None:
            given = {lang: text for lang, text in (("pl", table.instructions.pl),
                                                    ("en", table.instructions.en)) if text}
            kept = {lang: text for lang, text in base.instructions if lang not in given}
            changes["instructions"] = tuple({**kept, **given}.items())
        found[table.id] = replace(base, **changes)  # type: ignore[arg-type]
    return Catalogue(tuple(found.values()))


def offering_every_service(settings: Settings, data: dict[str, Any]) -> Settings:
    """A library table without ``services`` offers every service the config knows, the
    [[services]] ones too (its field's default can only name the shipped ones)."""
    every = settings.catalogue.ids
    if every == IDS:
        return settings
    tables = data.get("libraries") or ()
    libraries = tuple(
        dataclasses.replace(lib, services=every)
        if i < len(tables) and isinstance(tables[i], dict) and "services" not in tables[i]
        else lib for i, lib in enumerate(settings.libraries))
    return dataclasses.replace(settings, libraries=libraries)


def check_services(settings: Settings) -> None:
    """[[services]] between themselves (a new id has a name, no id twice, no keyword asks
    for two services), and the libraries' keys that name services name known ones."""
    from mailbot.intake.subjects import keyword_key

    src = settings.source
    shipped = {s.id for s in SHIPPED}
    seen: set[str] = set()
    for i, table in enumerate(settings.services):
        key = f"services[{i}]"
        if table.id in seen:
            raise ConfigError(f"duplicate service id {table.id!r}", file=src,
                              column=f"{key}.id")
        seen.add(table.id)
        if table.id not in shipped and not table.name:
            raise ConfigError("is required for a service mailbot does not ship (the name "
                              "patrons and staff read, e.g. \"ebookpoint BIBLIO\")",
                              file=src, column=f"{key}.name")
        for keyword in table.subjects or ():
            reduced = keyword_key(keyword)
            if not reduced:
                raise ConfigError(f"has {keyword!r}, which has no letter or digit to match "
                                  "in a subject", file=src, column=f"{key}.subjects")
            if reduced.startswith("test"):
                raise ConfigError(f"has {keyword!r}: a subject starting with TEST asks for "
                                  "an eligibility test (SPEC 2.3)", file=src,
                                  column=f"{key}.subjects")
    catalogue = settings.catalogue
    asks: dict[str, str] = {}
    for service in catalogue.services:
        for keyword in service.subjects:
            other = asks.setdefault(keyword_key(keyword), service.id)
            if other != service.id:
                # The table that gave the keyword a second time (else the first's).
                ids = [t.id for t in settings.services]
                i = ids.index(service.id) if service.id in ids else ids.index(other)
                raise ConfigError(f"the subject {keyword!r} would ask for both {other!r} and "
                                  f"{service.id!r}", file=src, column=f"services[{i}].subjects")
    known = ", ".join(catalogue.ids)
    for i, lib in enumerate(settings.libraries):
        key = f"libraries[{i}]"
        for name in lib.services:
            if name not in catalogue:
                raise ConfigError(f"unknown service {name!r} (known: {known})", file=src,
                                  column=f"{key}.services")
        for field, pairs in (("min_ages", lib.min_ages),
                             ("activation_urls", lib.activation_urls)):
            for name, _ in pairs:
                if name not in catalogue:
                    raise ConfigError(f"unknown service {name!r} (known: {known})",
                                      file=src, column=f"{key}.{field}.{name}")
