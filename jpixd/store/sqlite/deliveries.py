"""SQLite: the sender's claim (one trip to the database thread), its recovery and its
group-committed outcomes."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from jpixd.model import (
    Claimed,
)
from jpixd.store.base import (
    to_db,
)
from jpixd.store.deliveries import CURRENT_ADDRESS, DeliveryQueries, _claimed
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

    async def claim(self, now: datetime, limit: int, *, claimer: str,
                    lease_until: datetime) -> tuple[list[Claimed], int]:
        """Due deliveries, failures first then oldest, and any whose lease has expired
        (their sender died mid-send), marked `sending` under `claimer`'s lease in one
        transaction. Returns them and how many were taken over from an expired lease."""
        t = to_db(now)
        until = to_db(lease_until)

        def body(db: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            expired = [r["id"] for r in db.execute(
                "SELECT id FROM deliveries WHERE state = 'sending' AND lease_until < ? "
                "ORDER BY lease_until LIMIT ?", (t, limit))]
            ids = expired + [r["id"] for r in db.execute(
                "SELECT id FROM deliveries WHERE state IN ('pending', 'retry') "
                "AND not_before <= ? ORDER BY priority, not_before, id LIMIT ?",
                (t, limit - len(expired)))]
            if not ids:
                return [], 0
            marks = ",".join("?" for _ in ids)
            db.execute(f"UPDATE deliveries SET state = 'sending', claimed_at = ?, "
                       f"claimed_by = ?, lease_until = ?, attempts = attempts + 1, "
                       f"email = {CURRENT_ADDRESS}, updated_at = ? WHERE id IN ({marks})",
                       (t, claimer, until, t, *ids))
            rows = db.execute(f"""
                SELECT d.*, r.content AS r_content, r.change AS r_change,
                       s.email AS s_email, s.name AS s_name, s.organization AS s_org,
                       s.charset AS s_charset, s.status AS s_status, s.paused AS s_paused,
                       s.deleted_at AS s_deleted, s.carriers AS s_carriers,
                       EXISTS (SELECT 1 FROM suppressions x WHERE x.email = d.email
                               AND x.lifted_at IS NULL) AS suppressed
                FROM deliveries d
                JOIN notice_revisions r ON r.id = d.revision_id
                JOIN subscribers s ON s.id = d.subscriber_id
                WHERE d.id IN ({marks}) ORDER BY d.priority, d.not_before, d.id""",
                ids).fetchall()
            return rows, len(expired)

        rows, taken_over = await self._tx_sync(body)
        return [_claimed(r) for r in rows], taken_over

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
