"""PostgreSQL: per-source poll state and the quarantine."""

from __future__ import annotations

import hashlib
from datetime import datetime

from jpixd.model import SourceState
from jpixd.store.base import to_db, where_equal
from jpixd.store.feeds import _STATE_COLUMNS, source_state_from
from jpixd.store.pg.base import PgBase


class PgFeedStore(PgBase):
    async def source_state(self, source: str) -> SourceState:
        row = await self._one("SELECT * FROM source_state WHERE source = ?", (source,))
        return source_state_from(row)

    async def save_source_state(self, source: str, st: SourceState) -> None:
        values = (st.etag, st.last_modified, st.permanent_url, st.baseline_done,
                  st.last_attempt_at, st.last_success_at, st.last_error_at, st.last_error,
                  st.consecutive_failures, st.next_poll_at, st.last_result, st.last_items,
                  st.layout_warning, st.detail_error, st.permanent_for)
        cols = ", ".join(_STATE_COLUMNS)
        marks = ", ".join("?" for _ in _STATE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS)
        await self._write(f"INSERT INTO source_state (source, {cols}) VALUES (?, {marks}) "
                          f"ON CONFLICT (source) DO UPDATE SET {updates}", (source, *values))

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

    async def list_quarantine(self, *, origin: str | None = None, limit: int = 100,
                              offset: int = 0) -> tuple[list[dict[str, object]], int]:
        where, params = where_equal(("origin", origin))
        rows, total = await self._page("quarantine", where, params, "id DESC", limit, offset)
        return [_entry(r) for r in rows], total

    async def drop_quarantined(self, entry_id: int) -> bool:
        return await self._write("DELETE FROM quarantine WHERE id = ?", (entry_id,)) > 0

    async def quarantined(self, origin: str | None = None) -> list[dict[str, object]]:
        sql = "SELECT id, origin, ref, reason, payload, received_at FROM quarantine"
        rows = await (self._all(sql + " WHERE origin = ? ORDER BY id", (origin,)) if origin
                      else self._all(sql + " ORDER BY id"))
        return [_entry(r) for r in rows]


def _entry(r: object) -> dict[str, object]:
    """The same shape as SQLite's rows: the time as the text SQLite keeps."""
    row = dict(r)  # type: ignore[call-overload]
    out = {k: row[k] for k in ("id", "origin", "ref", "reason", "payload", "received_at")}
    at = out["received_at"]
    if isinstance(at, datetime):
        out["received_at"] = to_db(at)
    return out

