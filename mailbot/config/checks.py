"""The rules one config value obeys on its own, in the form pydantic runs them.

A settings field is annotated with its type and its rule, e.g. ``window_day: Day = 1`` or
``window_time: HHMM = "00:00"``; pydantic checks both while it reads the file
(``mailbot.config.load``). Rules that compare two values (a mailbox's library exists, ssl
and starttls exclude each other) are in ``mailbot.config.load``.

The markers below do what pydantic's ``Strict()`` and ``AfterValidator`` do, through
pydantic's ``__get_pydantic_core_schema__`` hook, so that importing the settings classes
does not import pydantic (~65 ms even after the CLI's own imports): every module and every
worker process imports the classes, only a process that reads a config file needs pydantic.
Nothing here runs when settings are made in code (tests, ``dataclasses.replace``): as
before, only a config file is checked.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailbot.errors import ConfigError


class _Strict:
    """No coercion: TOML types are exact, so ``port = "25"`` or ``ssl = 1`` is a mistake
    (an integer is still a number: ``timeout = 30`` is 30.0)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return {**handler(source), "strict": True}


class After:
    """``check(value)`` returns the value to keep, or raises ``ValueError`` /
    ``ConfigError``; the message becomes the config error's, with the key's path."""

    def __init__(self, check: Callable[[Any], Any]) -> None:
        self.check = check

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self._run, handler(source))

    def _run(self, value: Any) -> Any:
        try:
            return self.check(value)
        except ConfigError as exc:  # parse_hhmm and parse_window, shared with the rules
            raise ValueError(exc.message) from None


_STRICT = _Strict()
Int = Annotated[int, _STRICT]
Float = Annotated[float, _STRICT]
Str = Annotated[str, _STRICT]
Bool = Annotated[bool, _STRICT]

# What pydantic is told about every settings class: a key the class does not have is a
# mistake (a typo would otherwise silently leave the default in force).
CLOSED = {"extra": "forbid"}


def parse_hhmm(text: str, key: str = "time", source: str | None = None) -> time:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text)
    if not m:
        raise ConfigError(f"must be HH:MM, not {text!r}", file=source, column=key)
    return time(int(m.group(1)), int(m.group(2)))


def parse_window(text: str, key: str = "window", source: str | None = None) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ConfigError(f"must be HH:MM-HH:MM, not {text!r}", file=source, column=key)
    a, b = parse_hhmm(start.strip(), key, source), parse_hhmm(end.strip(), key, source)
    if not a < b:
        raise ConfigError("the window must end after it starts", file=source, column=key)
    return a, b


def _refuse_if(wrong: Callable[[Any], bool], message: str) -> After:
    def check(value: Any) -> Any:
        if wrong(value):
            raise ValueError(message)
        return value

    return After(check)


def each_one_of(allowed: tuple[str, ...], what: str) -> After:
    """A list of names, each one of ``allowed``, at least one, none twice."""

    def check(names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in allowed:
                raise ValueError(f"unknown {what} {name!r} (known: {', '.join(allowed)})")
        if not names:
            raise ValueError(f"needs at least one {what}")
        if len(set(names)) != len(names):
            raise ValueError(f"names a {what} twice: {list(names)!r}")
        return names

    return After(check)


def _between(low: int, high: int) -> After:
    return _refuse_if(lambda v: not low <= v <= high, f"must be between {low} and {high}")


def _hhmm(text: str) -> str:
    parse_hhmm(text)
    return text


def _window(text: str) -> str:
    parse_window(text)
    return text


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def _zone_unless_empty(name: str) -> str:
    return _zone(name) if name else name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def _amount(text: str) -> str:
    try:
        # NaN and Infinity are Decimals too, but no amount: comparing a balance with NaN
        # raises on every decision.
        finite = Decimal(text).is_finite()
    except InvalidOperation:
        finite = False
    if not finite:
        raise ValueError(f"not an amount: {text!r}")
    return text


def _languages(languages: tuple[str, ...]) -> tuple[str, ...]:
    for lang in languages:
        if lang not in ("pl", "en"):
            raise ValueError(f"unsupported language {lang!r} (pl, en)")
    if not languages:
        raise ValueError("needs at least one language")
    return languages


def _none_if_empty(text: str) -> str | None:
    return text or None


def _address(address: str) -> str:
    if "@" not in address:
        raise ValueError(f"not an e-mail address: {address!r}")
    return address


NotNegative = Annotated[int, _STRICT, _refuse_if(lambda v: v < 0, "must not be negative")]
AtLeastOne = Annotated[int, _STRICT, _refuse_if(lambda v: v < 1, "must be at least 1")]
NotNegativeFloat = Annotated[float, _STRICT, _refuse_if(lambda v: v < 0, "must not be negative")]
Positive = Annotated[float, _STRICT, _refuse_if(lambda v: v <= 0, "must be positive")]
Day = Annotated[int, _STRICT, _between(1, 28)]  # every month has it
Connections = Annotated[int, _STRICT, _between(1, 8)]
TcpPort = Annotated[int, _STRICT,
                    _refuse_if(lambda v: not 0 <= v <= 65535, "must be a TCP port (0-65535)")]
NotBlank = Annotated[str, _STRICT, _refuse_if(lambda v: not v.strip(), "must not be empty")]
HHMM = Annotated[str, _STRICT, After(_hhmm)]
Window = Annotated[str, _STRICT, After(_window)]  # "HH:MM-HH:MM"
TimeZone = Annotated[str, _STRICT, After(_zone)]
TimeZoneOrEmpty = Annotated[str, _STRICT, After(_zone_unless_empty)]  # "": the default zone
Regex = Annotated[str, _STRICT, After(_regex)]
Amount = Annotated[str, _STRICT, After(_amount)]  # a decimal number as text, e.g. "2.50"
Languages = Annotated[tuple[Str, ...], After(_languages)]
Address = Annotated[str, _STRICT, After(_address)]
NoneIfEmpty = Annotated[str, _STRICT, After(_none_if_empty)]  # "" is read as "not set"
