"""The rule trail's notes and the audit log's entries, worded in the staff's language.

A rule leaves a catalogue key and its values behind (mailbot.rules.base.Hit: ``note``,
``args``); an audit entry its action and values (mailbot.web.actions.audit). Both are
stored as they were decided and worded only when a page shows them, so a librarian reads
Polish, a colleague English, and an instant in the library's own zone, labelled — never
the UTC the database keeps. Trail entries and audit rows written before they carried
values (no ``args``) are English text and are shown as stored.

How a value is shown follows from its name: ``*_at`` an instant (ISO with offset) →
the zone's wall clock and zone abbreviation; ``service`` a service's name; ``outcome``
and ``was`` an outcome's label; ``amount`` money with the language's decimal mark; ``n``
picks the plural form of a counted text (a plural catalogue entry); ``month`` (YYYY-MM)
the month's name ("luty 2027"); ``reply_state``
a reply's state; ``variant`` picks a text's variant (``audit_override_withdrawn``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.clock import as_aware, parse_month
from mailbot.respond.i18n import format_month
from mailbot.services import SHIPPED_CATALOGUE, Catalogue
from mailbot.web import i18n

_OUTCOME_ARGS = frozenset({"outcome", "was", "verdict"})


def local_instant(value: str | datetime, zone: ZoneInfo) -> str:
    """An instant as staff read it: the library's wall clock, with the zone's name (CET,
    CEST). Seconds only where they matter (a mail 10 s before the window opened)."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = as_aware(dt).astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def _shown(lang: str, name: str, value: Any, zone: ZoneInfo, catalogue: Catalogue) -> Any:
    if value is None or value == "":
        return "—"
    if name.endswith("_at"):
        try:
            return local_instant(value, zone)
        except (TypeError, ValueError):
            return value
    if name == "service" or name.endswith("_service"):
        return i18n.service_label(str(value), catalogue)
    if name in _OUTCOME_ARGS:
        return i18n.outcome_label(lang, str(value))
    if name == "month":
        try:
            return format_month(*parse_month(str(value)), lang)
        except ValueError:
            return value
    if name == "reply_state" and i18n.has(lang, f"reply_{value}"):
        return i18n.t(lang, f"reply_{value}")
    if name == "amount" and lang == "pl":
        return str(value).replace(".", ",")
    return value


def worded(lang: str, key: str, args: Mapping[str, Any], zone: ZoneInfo,
           catalogue: Catalogue = SHIPPED_CATALOGUE) -> str | None:
    """The catalogue's text ``key`` with ``args`` shown (None: no such text); a service
    by its name in ``catalogue`` (the config's services)."""
    shown = {name: _shown(lang, name, value, zone, catalogue) for name, value in args.items()
             if name != "variant"}
    if args.get("variant"):
        key = f"{key}_{args['variant']}"
    if not i18n.has(lang, key):
        return None
    try:
        if i18n.is_counted(lang, key):
            if not isinstance(args.get("n"), int):
                return None
            shown.pop("n", None)
            return i18n.tn(lang, key, args["n"], **shown)
        return i18n.t(lang, key).format(**shown)
    except (KeyError, IndexError, ValueError):
        return None  # a value the text names is missing: shown raw by the caller


def note_text(lang: str, note: Mapping[str, Any] | str | None,
              args: Mapping[str, Any] | None = None, *, zone: ZoneInfo,
              catalogue: Catalogue = SHIPPED_CATALOGUE) -> str:
    """A trail step's note (the step itself, or a note key and its values) in ``lang``.

    An old step (no ``args``) is English text, shown as stored; so is a key the catalogue
    does not know (a newer rule's, read by an older dashboard)."""
    if isinstance(note, Mapping):
        if "args" not in note:
            return str(note.get("note") or "")
        args, note = note.get("args") or {}, note.get("note")
    if not note:
        return ""
    if args is None:
        args = {}
    text = worded(lang, "note_" + note, args, zone, catalogue)
    return text if text is not None else str(note)


def audit_text(lang: str, action: str, args: Mapping[str, Any] | None, detail: str, *,
               zone: ZoneInfo, catalogue: Catalogue = SHIPPED_CATALOGUE) -> str:
    """An audit entry's details in ``lang``: the catalogue's ``audit_<action>`` with its
    values, or the stored English line for an entry written without values."""
    if args is None:
        return detail
    text = worded(lang, "audit_" + action, args, zone, catalogue)
    return text if text is not None else detail
