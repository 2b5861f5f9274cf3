"""``[libraries.quotas]``: the codes of each of a library's pools kept for the desk and for
first-time patrons until the release time. The arithmetic of the parts is
mailbot.quotas; this is the table as the config file gives it (part of
mailbot.config.sections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from mailbot.config.checks import CLOSED, HHMM, After, Day, Float, NotNegative


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError("must be a fraction between 0 and 1 (0.5: half)")
    return value


# A fraction of a pool (desk_share): 0.5 is half of it.
Fraction = Annotated[Float, After(_fraction)]


@dataclass(frozen=True)
class QuotaSettings:
    """``[libraries.quotas]``: codes of each of the library's pools (every service, every
    month) kept for the desk and for first-time patrons until the release time
    (mailbot.quotas). Nothing set: no quotas, every code for whoever asks first."""

    desk_share: Fraction | None = None  # this fraction of each pool, rounded down
    desk_codes: NotNegative | None = None  # or this many codes of each pool
    first_time_codes: NotNegative = 0  # for cards this library never issued a code to
    # Released to everybody on this day of the month at this time (library time zone);
    # no release_day: kept until the month ends.
    release_day: Day | None = None
    release_time: HHMM = "00:00"

    __pydantic_config__ = CLOSED

    def __post_init__(self) -> None:
        # (a ValueError here is the config error of the table [libraries.quotas])
        if self.desk_share is not None and self.desk_codes is not None:
            raise ValueError("give desk_share or desk_codes, not both")

    @property
    def active(self) -> bool:
        """Whether any code is kept back at all."""
        return bool(self.desk_share or self.desk_codes or self.first_time_codes)
