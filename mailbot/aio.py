"""One way to run the async SMTP side: on uvloop where it is installed.

Sending a burst is thousands of short SMTP exchanges, each several trips through the event
loop; uvloop (libuv) makes those trips cheaper (aiosmtplib over one connection: about a
quarter less time per reply, measured in docs/performance.md). Behaviour is the same on
the standard loop, which is used where uvloop is not available (it is not on Windows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
    uvloop = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop's event loop when available."""
    if uvloop is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
