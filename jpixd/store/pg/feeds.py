"""PostgreSQL: per-source poll state and the quarantine."""

from __future__ import annotations

import hashlib
from datetime import datetime

from jpixd.store.feeds import FeedQueries
from jpixd.store.pg.base import PgBase


class PgFeedStore(FeedQueries, PgBase):
    async def quarantine(self, *, origin: str, ref: str, reason: str, payload: str,
                         now: datetime, incident: str | None = None) -> bool:
        """As on SQLite: kept verbatim, once per (origin, ref, reason, payload)."""
        digest = hashlib.sha256(f"{ref}\0{reason}\0{payload}".encode("utf-8", "replace")
                                ).hexdigest()
        if incident:
            reason = f"{reason} (incident {incident})"
        # Lone surrogates, and NUL, which PostgreSQL's text cannot hold.
        payload = payload.encode("utf-8", "replace").decode("utf-8").replace("\0", "\\x00")
        ref = ref.replace("\0", "\\x00")
        reason = reason.replace("\0", "\\x00")
        return await self._write(
            "INSERT INTO quarantine (origin, ref, reason, payload, received_at, digest) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, digest) DO NOTHING",
            (origin, ref, reason, payload, now, digest)) > 0


