"""PostgreSQL: shadow mode and the cut-over (see `jpixd.store.shadow`)."""

from __future__ import annotations

import json
from datetime import datetime

from jpixd.store.base import to_db
from jpixd.store.pg.base import PgBase, execute, q
from jpixd.store.pg.control import MODE_KEY, PUT
from jpixd.store.shadow import CutoverResult, ShadowQueries


class PgShadowStore(ShadowQueries, PgBase):
    async def mark_shadow(self, delivery_id: int, now: datetime, *, subject: str,
                          message: bytes, charset: str) -> None:
        async with self._tx() as conn:
            await conn.execute(q(
                "UPDATE deliveries SET state = 'shadow', sent_at = NULL, transport = 'shadow', "
                "reason = 'shadow mode: rendered, not sent', updated_at = ? "
                "WHERE id = ? AND state = 'sending'"), now, delivery_id)
            await conn.execute(q(
                "INSERT INTO shadow_mail (delivery_id, subject, message, charset, rendered_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET "
                "subject = excluded.subject, message = excluded.message, "
                "charset = excluded.charset, rendered_at = excluded.rendered_at"),
                delivery_id, subject, message, charset, now)

    async def cutover(self, now: datetime) -> CutoverResult:
        t = to_db(now)
        async with self._tx() as conn:
            skipped = await execute(
                conn, "UPDATE deliveries SET state = 'skipped', reason = 'cut-over: announced "
                "by the old system', updated_at = ? WHERE purpose = 'notice' "
                "AND state IN ('pending', 'retry', 'sending')", now)
            kept = await conn.fetchval("SELECT COUNT(*) FROM deliveries WHERE purpose = "
                                       "'reminder' AND state IN ('pending', 'retry')")
            await conn.execute(q("UPDATE deliveries SET state = 'retry', updated_at = ? "
                                 "WHERE purpose = 'reminder' AND state = 'sending'"), now)
            shadow = await conn.fetchval("SELECT COUNT(*) FROM deliveries "
                                         "WHERE state = 'shadow'")
            raw = await conn.fetchval(q("SELECT value FROM control WHERE key = ? FOR UPDATE"),
                                      MODE_KEY)
            mode = json.loads(raw) if raw else {}
            value = json.dumps({"shadow": False, "since": mode.get("since"), "cutover_at": t})
            await conn.execute(q(PUT), MODE_KEY, value, now)
        return CutoverResult(skipped, int(kept), int(shadow))
