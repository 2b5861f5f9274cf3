"""The decide stage: stored requests -> outcomes, strictly in arrival order per library.

Where each part lives:
  horizon.py    how far a library's requests may be decided (every mailbox read past them)
  runner.py     the loop: batches, arrival order, the set-aside of a request that crashes
  policies.py   how a batch holds the database (SQLite: snapshot then check; PostgreSQL:
                row and advisory locks)
  batch.py      what a batch reads (once for all its requests) into the rules' facts
  card_history.py  what the ledger says of cards: a month's first code, unactivated codes
  quota_reads.py   the pools' quota counts a batch reads and keeps current (mailbot.quotas)
  decision.py   deciding one request from its facts: pure (the chains: mailbot.rules)
  writes.py     what a batch writes (decisions, codes and ledger, outbox) in bulk
  context.py    the reply template's context
  sizes.py      how many requests one transaction decides
Issuing a code is mailbot.ledger's; composing replies on worker processes mailbot.offload's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailbot.decide.context import reply_context
    from mailbot.decide.horizon import Waiting, arrival_horizon, waiting, waiting_on
    from mailbot.decide.runner import FIRST_BATCH, Decided, decide_pending

# Each name is imported from its module when first asked for (PEP 562): ``mailbot status``
# and the dashboard need the horizon (what waits, a mailbox's health), not the runner,
# the rules and the reply composer behind it (a tenth of a second at every start).
_HOMES = {
    "reply_context": "context",
    "Waiting": "horizon", "arrival_horizon": "horizon", "waiting": "horizon",
    "waiting_on": "horizon",
    "FIRST_BATCH": "runner", "Decided": "runner", "decide_pending": "runner",
}

__all__ = ["FIRST_BATCH", "Decided", "Waiting",
           "arrival_horizon", "decide_pending", "reply_context", "waiting", "waiting_on"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
