"""an index of requests by outcome, for monitoring

``/metrics`` counts the requests of each library by outcome, and ``mailbot status`` (and
``/healthz``) the ``pool_exhausted`` refusals of the month, at every scrape and check.
Without an index each read walked the whole requests table past every stored mail body
(measured at 50,000 requests: 76 and 91 ms, growing with the table); with this covering
index 2-3 ms.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_outcome", "requests",
                    ["library_id", "outcome", "month", "service"])


def downgrade() -> None:
    op.drop_index("ix_requests_outcome", table_name="requests")
