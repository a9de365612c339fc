"""SQLite: the sender's recovery after a crash (the claim and the group-committed
outcomes are `jpixd.store.deliveries`' plans, run in one trip to the database thread)."""

from __future__ import annotations

from datetime import datetime

from jpixd.store.deliveries import DeliveryQueries
from jpixd.store.sqlite.base import SqliteBase


class DeliveryStore(DeliveryQueries, SqliteBase):
    # ------------------------------------------------------------------ the sender

    async def recover_sending(self, now: datetime, claimer: str | None = None) -> int:
        """Rows left in `sending` go out again (at-least-once): `claimer`'s own (its round
        broke), or every one (at start-up, under the state directory's lock, so no other
        process can be sending them)."""
        who, params = ("AND claimed_by = ?", [claimer]) if claimer is not None else ("", [])
        return await self._write(
            "UPDATE deliveries SET state = 'retry', not_before = ?, updated_at = ?, "
            "reason = 'recovered after a crash', claimed_by = NULL, lease_until = NULL "
            f"WHERE state = 'sending' {who}", (now, now, *params))
