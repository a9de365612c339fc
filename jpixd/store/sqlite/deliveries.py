"""SQLite: the sender's recovery and its group-committed outcomes (the claim is
`jpixd.store.deliveries.claim_plan`, run in one trip to the database thread)."""

from __future__ import annotations

from datetime import datetime

from jpixd.store.base import to_db
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

    # Outcomes are single statements: each is atomic by itself, and one trip to the
    # database thread per mail is what lets the sender pass 2,000 mails a second.

    async def mark_sent(self, delivery_id: int, now: datetime, *, transport: str,
                        message_id: str, ses_message_id: str | None) -> None:
        await self.mark_sent_many([(delivery_id, transport, message_id, ses_message_id)], now)

    async def mark_sent_many(self, sent: list[tuple[int, str, str, str | None]],
                             now: datetime) -> None:
        """Several (id, transport, message_id, ses_message_id) at once: one trip."""
        t = to_db(now)
        async with self._lock:
            await self._db.executemany(
                "UPDATE deliveries SET state = 'sent', sent_at = ?, transport = ?, "
                "message_id = ?, ses_message_id = ?, last_error = NULL, reason = NULL, "
                "updated_at = ? WHERE id = ?",
                [(t, tr, mid, ses, t, did) for did, tr, mid, ses in sent])
