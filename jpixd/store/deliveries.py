"""Deliveries: listing for the admin API and the outbox gauges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiosqlite

from jpixd.model import Delivery, DeliveryState
from jpixd.store.base import SqliteBase, from_db, from_db_req, to_db


def _row_to_delivery(row: aiosqlite.Row) -> Delivery:
    return Delivery(
        id=row["id"], revision_id=row["revision_id"], notice_id=row["notice_id"],
        subscriber_id=row["subscriber_id"], email=row["email"], purpose=row["purpose"],
        slot=row["slot"], priority=row["priority"], state=DeliveryState(row["state"]),
        not_before=from_db_req(row["not_before"]), attempts=row["attempts"],
        reason=row["reason"], sent_at=from_db(row["sent_at"]), message_id=row["message_id"],
        ses_message_id=row["ses_message_id"], last_error=row["last_error"],
        created_at=from_db(row["created_at"]), updated_at=from_db(row["updated_at"]),
    )


class DeliveryStore(SqliteBase):
    async def list_deliveries(self, *, state: str | None = None, notice_id: int | None = None,
                              subscriber_id: int | None = None, limit: int = 100,
                              offset: int = 0) -> tuple[list[Delivery], int]:
        where: list[str] = []
        params: list[Any] = []
        for col, value in (("state", state), ("notice_id", notice_id),
                           ("subscriber_id", subscriber_id)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        total = await self._one(f"SELECT COUNT(*) AS n FROM deliveries {clause}", params)
        rows = await self._all(f"SELECT * FROM deliveries {clause} ORDER BY id LIMIT ? OFFSET ?",
                               [*params, limit, offset])
        return [_row_to_delivery(r) for r in rows], int(total["n"]) if total else 0

    async def delivery_counts(self) -> dict[DeliveryState, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
        counts = dict.fromkeys(DeliveryState, 0)
        for row in rows:
            counts[DeliveryState(row["state"])] = int(row["n"])
        return counts

    async def oldest_due_since(self, now: datetime) -> datetime | None:
        """When the oldest delivery that is due (pending/retry, not_before passed) became due."""
        row = await self._one(
            "SELECT MIN(not_before) AS t FROM deliveries "
            "WHERE state IN ('pending', 'retry', 'sending') AND not_before <= ?",
            (to_db(now),),
        )
        return from_db(row["t"]) if row else None
