"""What a decide batch reads for the pools' quotas (mailbot.quotas), where the library keeps
any: each pool's use as the batch began and the cards this library ever issued a code to,
read once for the batch and kept current as it issues codes, like the other counters of
mailbot.decide.batch (which holds one of these).

The counts come from the ledger each batch (mailbot.ledger.pool_use): nothing about
quotas is written anywhere, so a batch rolled back, a process killed mid-batch or another
process deciding the next batch counts exactly what was committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailbot import quotas
from mailbot.clock import month_key
from mailbot.config import LibrarySettings
from mailbot.ledger import cards_ever_issued, pool_use


class BatchQuotas:
    """One batch's quota counts for ``pools`` ((service, month)) and ``cards``."""

    def __init__(self, session: Session, library: LibrarySettings, tz: Any,
                 cards: Collection[str], pools: Collection[tuple[str, str]]) -> None:
        self.session, self.library, self.tz = session, library, tz
        self.settings = library.quotas
        self.use = {pool: pool_use(session, library_id=library.id, service=pool[0],
                                   month=pool[1]) for pool in pools}
        # First-timers' codes this batch issued (the batch counts every code it takes).
        self.first_taken: Counter[tuple[str, str]] = Counter()
        self.ever_issued: set[str] = cards_ever_issued(session, library.id, cards) \
            if self.settings.first_time_codes and cards else set()

    def first_time(self, card: str | None) -> bool:
        """Whether the first-time quota counts ``card`` a first-timer."""
        return bool(card) and self.settings.first_time_codes > 0 \
            and card not in self.ever_issued

    def parts(self, service: str, year: int, mon: int, now: datetime,
              taken: int) -> quotas.Parts | None:
        """What is left of each part of the pool (``taken``: codes of it this batch
        issued), while its quotas hold (None: released, or a service not offered)."""
        q = self.settings
        if service not in self.library.services or not quotas.held(q, self.tz, year, mon, now):
            return None
        pool = (service, month_key(year, mon))
        if pool not in self.use:  # (another service's pool, asked of an exhausted one)
            self.use[pool] = pool_use(self.session, library_id=self.library.id,
                                      service=service, month=pool[1])
        base = self.use[pool]
        now_use = quotas.PoolUse(free=base.free - taken, issued=base.issued + taken,
                                 staff=base.staff,
                                 first_time=base.first_time + self.first_taken[pool])
        return quotas.parts(q, now_use, release_at=quotas.release_at(q, self.tz, year, mon))

    def issued(self, card: str, service: str, month: str) -> None:
        """An e-mail request of ``card`` was issued a code of the pool."""
        self.first_taken[(service, month)] += self.first_time(card)
        self.ever_issued.add(card)
