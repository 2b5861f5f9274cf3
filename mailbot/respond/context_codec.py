"""A reply's context as JSON, exactly: what the outbox keeps of a reply it composes when
sending (recipes.py), decoded to values equal to the ones decided, of the same types.

JSON has strings, numbers, booleans, null, lists and objects; a reply's context also holds
dates, aware datetimes (whose zone the templates print), Decimals (a balance due), tuples
(the shape cache keys on them) and a few NamedTuples (services.Steps, validity.Sentence,
rules.offered.Offer, penalty.Missed). Each of those is written as an object with one
``$``-key naming its kind; a dict inside the context is one too (``$o``), so a plain object
is never a value. A StrEnum (an outcome) is kept as its text, which is all a template prints or compares.
Anything else is refused with TypeError when the reply is decided, never silently turned
into something a template would print differently (another ``str`` subclass, a naive
datetime, a zone that is not an IANA name or a fixed offset).

The standard library's ``json`` does the text (its C encoder and decoder); pickle would
take any object, including ones a later release cannot load, and would make the outbox
a store of executable data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.penalty import Missed
from mailbot.rules.offered import Offer
from mailbot.services import Steps
from mailbot.validity import Sentence

__all__ = ["decode", "encode"]

# The NamedTuples a context may hold, by the name written for them. A new one must be
# added here (tests/respond/test_context_codec.py composes every outcome through this).
_RECORDS: dict[str, type[tuple[Any, ...]]] = {
    "Offer": Offer, "Missed": Missed, "Sentence": Sentence, "Steps": Steps,
}
_NAMES = {cls: name for name, cls in _RECORDS.items()}
_PLAIN = (str, int, bool, float, type(None))


def encode(value: Mapping[str, Any]) -> str:
    """``value`` (a mapping with string keys: a context, a compose job) as JSON text."""
    return json.dumps(_object(value), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)


def decode(text: str) -> dict[str, Any]:
    """What ``encode`` was given, as a dict."""
    return json.loads(text, object_hook=_tagged)


def _object(value: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if type(key) is not str or key.startswith("$"):
            raise TypeError(f"a reply context's keys are names, not {key!r}")
        out[key] = _value(item)
    return out


def _value(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, StrEnum):
        # An outcome or a quota's part: a template prints it and compares it as its text.
        return str(value)
    if kind is list:
        return [_value(v) for v in value]
    if kind is tuple:
        return {"$t": [_value(v) for v in value]}
    if kind in _NAMES:
        return {"$r": _NAMES[kind], "v": [_value(v) for v in value]}
    if kind is datetime:
        return {"$dt": value.isoformat(), "z": _zone(value)}
    if kind is date:
        return {"$d": value.isoformat()}
    if kind is Decimal:
        return {"$dec": str(value)}
    if kind is dict or kind is MappingProxyType:
        return {"$o": _object(value)}
    raise TypeError(f"a reply context cannot keep a {kind.__name__} ({value!r})")


def _zone(value: datetime) -> str | int:
    """The datetime's zone: its IANA name, or a fixed offset in seconds."""
    tz = value.tzinfo
    if isinstance(tz, ZoneInfo):
        return tz.key
    if isinstance(tz, timezone):
        if tz is UTC:
            return "UTC"
        offset = tz.utcoffset(None)
        if tz.tzname(None) == timezone(offset).tzname(None):  # no name of its own
            return int(offset.total_seconds())
    raise TypeError(f"a reply context keeps aware datetimes in an IANA zone or at a fixed "
                    f"offset, not {value!r}")


def _tagged(obj: dict[str, Any]) -> Any:
    if "$t" in obj:
        return tuple(obj["$t"])
    if "$r" in obj:
        return _RECORDS[obj["$r"]](*obj["v"])
    if "$dt" in obj:
        moment = datetime.fromisoformat(obj["$dt"])
        zone = obj["z"]
        if zone == "UTC":
            return moment.astimezone(UTC)
        if isinstance(zone, int):
            return moment.astimezone(timezone(timedelta(seconds=zone)))
        return moment.astimezone(ZoneInfo(zone))
    if "$d" in obj:
        return date.fromisoformat(obj["$d"])
    if "$dec" in obj:
        return Decimal(obj["$dec"])
    if "$o" in obj:
        return obj["$o"]
    return obj
