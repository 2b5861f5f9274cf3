"""The decide stage: stored requests -> outcomes, strictly in arrival order per library.

Where each part lives:
  horizon.py    how far a library's requests may be decided (every mailbox read past them)
  runner.py     the loop: batches, arrival order, the set-aside of a request that crashes
  policies.py   how a batch holds the database (SQLite: snapshot then check; PostgreSQL:
                row and advisory locks)
  batch.py      what a batch reads (once for all its requests) into the rules' facts
  decision.py   deciding one request from its facts: pure (the chains: mailbot.rules)
  writes.py     what a batch writes (decisions, codes and ledger, outbox) in bulk
  context.py    the reply template's context
  sizes.py      how many requests one transaction decides
Issuing a code is mailbot.ledger's; composing replies on worker processes mailbot.offload's.
"""

from __future__ import annotations

from mailbot.decide.context import reply_context
from mailbot.decide.horizon import Waiting, arrival_horizon, waiting, waiting_on
from mailbot.decide.runner import FIRST_BATCH, Decided, decide_pending

__all__ = ["FIRST_BATCH", "Decided", "Waiting",
           "arrival_horizon", "decide_pending", "reply_context", "waiting", "waiting_on"]
