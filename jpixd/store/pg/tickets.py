"""PostgreSQL: Backlog cases (all shared: `jpixd.store.tickets`; one open case per address
is the partial unique index's rule as well as `file_bounce_plan`'s)."""

from __future__ import annotations

from jpixd.store.pg.base import PgBase
from jpixd.store.tickets import TicketQueries


class PgTicketStore(TicketQueries, PgBase):
    """Backlog cases on PostgreSQL: all in TicketQueries."""
