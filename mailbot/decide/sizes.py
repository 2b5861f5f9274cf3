"""How many requests one transaction decides: the one place both deciding and run --once read.

Read as ``sizes.BATCH_SIZE`` when needed (not imported by value), so that a setting changed
here (tests make batches small) governs both the batches and run --once's burst check.
"""

from __future__ import annotations

# With the local reader table (one query for a whole batch). run --once takes BATCH_SIZE
# requests waiting as a burst.
BATCH_SIZE = 200
# With a remote catalogue, whose lookups would hold the transaction open.
REMOTE_BATCH_SIZE = 10
