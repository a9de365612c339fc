"""SQLite: Backlog cases (all shared: `jpixd.store.tickets`, whose `file_bounce_plan`
runs inside the bounce's own transaction)."""

from __future__ import annotations

from jpixd.store.sqlite.base import SqliteBase
from jpixd.store.tickets import TicketQueries


class TicketStore(TicketQueries, SqliteBase):
    """Backlog cases on SQLite: all in TicketQueries."""
