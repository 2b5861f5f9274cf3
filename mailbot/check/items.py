"""What one check is, and what it found.

A check is a plain function: it returns a short note when the item is fine, raises
``Failed`` (with the reason, in words staff and IT can act on) when it is not, or
``Skipped`` when there is nothing to check. Any other exception is a failure too, named
by its type and text (``deadline.outcome``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


class Failed(Exception):
    """The item does not work; the text says why and, where we know, what to do."""


class Skipped(Exception):
    """There is nothing to check for this item (the text says why)."""


@dataclass(frozen=True)
class Check:
    item: str  # what is checked, named as staff find it in the config
    run: Callable[[], str]
    timeout: float  # seconds; after that the item fails, whatever it is waiting for


@dataclass(frozen=True)
class Result:
    state: str  # OK, FAIL or SKIP
    item: str
    detail: str = ""

    @property
    def line(self) -> str:
        return f"{self.state:4}  {self.item}" + (f": {self.detail}" if self.detail else "")
