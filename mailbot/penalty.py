"""The penalty for codes not activated: a rule with three parameters, and its month arithmetic.

``penalty = { misses = 1, within_months = 1, block_months = 3 }`` in a ``[[libraries]]``
table reads: once a card has *misses* months with an unactivated code within
*within_months* consecutive months, it gets no code for the *block_months* months after the
month of the last of those misses. The libraries' rulebooks, written this way:

- one unactivated code blocks three months (Mokotów, Izabelin, Jasło; ``penalty_months =
  3``, the default): ``{ misses = 1, within_months = 1, block_months = 3 }``;
- refused after two missed activations within three months (Targówek): ``{ misses = 2,
  within_months = 3, block_months = 1 }`` — "refused" read as the month after the second
  miss only, as Nadarzyn's single miss is;
- refused the next month only (Nadarzyn, Nowy Sącz): ``{ misses = 1, within_months = 1,
  block_months = 1 }``;
- ``penalty = 0`` (or ``false``): no penalty.

What counts, and when (every month is a calendar month of the library's time zone):

- a *miss* is a month in which the card was issued a code that the platform's activation
  report for that month lists as not activated. A month whose report was not imported does
  not count (nothing is known of it yet), and a month with two unactivated codes (one per
  service, under ``one_code_per_month = "per_service"``) is one miss: the rulebooks count
  months ("nieaktywowanie kodu w danym miesiącu");
- a month T *triggers* the block when it is a miss and the months T-within_months+1 … T
  hold at least ``misses`` misses;
- a request of month M is refused when some month of M-block_months … M-1 triggered: the
  block covers the block_months months after the trigger and ends on the first day of the
  month after them (00:00, library time). So the months looked at for M are
  M-block_months-within_months+1 … M-1; the month of the request itself never counts (its
  code can still be activated).

``penalty_months = N`` (the older key) is ``{ misses = 1, within_months = 1, block_months
= N }``, and 0 is off; a table may give one of the two keys, not both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from mailbot.clock import add_months, month_key, parse_month

# Bounds on the parameters: a rulebook speaks of months, not years, and a mistyped 30
# would quietly block a patron for years.
MAX_WITHIN_MONTHS = 12
MAX_BLOCK_MONTHS = 24
_KEYS = ("misses", "within_months", "block_months")


@dataclass(frozen=True)
class Penalty:
    """A library's penalty rule; ``block_months = 0`` is no penalty at all."""

    misses: int = 1
    within_months: int = 1
    block_months: int = 3

    @property
    def on(self) -> bool:
        return self.block_months > 0

    def months_looked_at(self, month: str) -> tuple[str, ...]:
        """The months (YYYY-MM, latest first) whose misses can block a request of
        ``month``: M-1 back to M-block_months-within_months+1; none when off."""
        if not self.on:
            return ()
        return _months_before(month, self.block_months + self.within_months - 1)

    def block(self, month: str, missed: Collection[str]) -> Block | None:
        """The block a request of ``month`` meets, given the months with a miss among
        ``months_looked_at(month)`` (others are ignored), or None."""
        if not self.on:
            return None
        looked_at = self.months_looked_at(month)
        misses = {m for m in missed if m in looked_at}
        # The latest trigger gives the latest end: look from the month before backwards.
        for trigger in looked_at[:self.block_months]:
            if trigger not in misses:
                continue
            window = _months_before(_next(trigger), self.within_months)
            counted = tuple(sorted(m for m in window if m in misses))
            if len(counted) >= self.misses:
                y, m = add_months(*parse_month(trigger), self.block_months + 1)
                return Block(until=date(y, m, 1), months=counted)
        return None


@dataclass(frozen=True)
class Block:
    """A request refused for the penalty: ``until`` the first day a code may be had again,
    ``months`` the misses (YYYY-MM, oldest first) that made the block."""

    until: date
    months: tuple[str, ...]


OFF = Penalty(block_months=0)


class Missed(NamedTuple):
    """A code not activated, as a blocked reply names it: its month (first day) and
    service; never the code (it was the patron's, but refusals carry no codes)."""

    month: date
    service: str
    service_name: str | None = None


def from_months(months: int) -> Penalty:
    """``penalty_months = N``: one miss blocks N months; 0 is off."""
    return Penalty(1, 1, months) if months > 0 else OFF


def parse(value: Any) -> Penalty:
    """The ``penalty`` key's value, as the config file has it: 0 or false (off), or a
    table of the three parameters. Raises ValueError naming what is wrong."""
    if value is False or (type(value) is int and value == 0):
        return OFF
    if not isinstance(value, Mapping):
        raise ValueError("must be 0, false or a table { misses = 1, within_months = 1, "
                         f"block_months = 3 }}, not {value!r}")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known keys: {', '.join(_KEYS)})")
    missing = [k for k in _KEYS if k not in value]
    if missing:
        raise ValueError(f"needs {', '.join(missing)} (e.g. {{ misses = 1, within_months = 1, "
                         "block_months = 3 })")
    for key in _KEYS:
        if type(value[key]) is not int:
            raise ValueError(f"{key} must be an integer, not {value[key]!r}")
    rule = Penalty(value["misses"], value["within_months"], value["block_months"])
    if not 1 <= rule.within_months <= MAX_WITHIN_MONTHS:
        raise ValueError(f"within_months must be between 1 and {MAX_WITHIN_MONTHS}")
    if not 1 <= rule.misses <= rule.within_months:
        raise ValueError("misses must be between 1 and within_months (a miss is a month "
                         "with an unactivated code)")
    if not 1 <= rule.block_months <= MAX_BLOCK_MONTHS:
        raise ValueError(f"block_months must be between 1 and {MAX_BLOCK_MONTHS} (penalty "
                         "= 0 turns the penalty off)")
    return rule


def one_key_of_two(data: Any) -> Any:
    """A ``[[libraries]]`` table, as parsed, that gives ``penalty`` or ``penalty_months``,
    not both (they say the same thing two ways, and which would win is a guess)."""
    if isinstance(data, Mapping) and "penalty" in data and "penalty_months" in data:
        raise ValueError("penalty and penalty_months are both given: keep one (penalty_months"
                         " = N is penalty = { misses = 1, within_months = 1, block_months ="
                         " N })")
    return data


def _next(month: str) -> str:
    return month_key(*add_months(*parse_month(month), 1))


@lru_cache(maxsize=256)
def _months_before(month: str, count: int) -> tuple[str, ...]:
    # Asked for every request of a batch, always about the same month or two.
    y, m = parse_month(month)
    return tuple(month_key(*add_months(y, m, -k)) for k in range(1, count + 1))
