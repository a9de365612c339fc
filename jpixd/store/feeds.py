"""Per-source poll state and the quarantine of what could not be understood."""

from __future__ import annotations

import hashlib
from datetime import datetime

from jpixd.model import SourceState
from jpixd.store.base import Queries, Row, as_text, from_db, where_equal

_STATE_COLUMNS = ("etag", "last_modified", "permanent_url", "baseline_done",
                  "last_attempt_at", "last_success_at", "last_error_at", "last_error",
                  "consecutive_failures", "next_poll_at", "last_result", "last_items",
                  "layout_warning", "detail_error", "permanent_for")


def source_state_from(row: Row | None) -> SourceState:
    """A source's stored poll state (both stores' rows)."""
    if row is None:
        return SourceState()
    return SourceState(
        etag=row["etag"], last_modified=row["last_modified"],
        permanent_url=row["permanent_url"], baseline_done=bool(row["baseline_done"]),
        last_attempt_at=from_db(row["last_attempt_at"]),
        last_success_at=from_db(row["last_success_at"]),
        last_error_at=from_db(row["last_error_at"]), last_error=row["last_error"],
        consecutive_failures=row["consecutive_failures"],
        next_poll_at=from_db(row["next_poll_at"]),
        last_result=row["last_result"], last_items=row["last_items"],
        layout_warning=row["layout_warning"], detail_error=row["detail_error"],
        permanent_for=row["permanent_for"],
    )


def quarantined_entry(r: Row) -> dict[str, object]:
    entry: dict[str, object] = {k: r[k] for k in ("id", "origin", "ref", "reason", "payload")}
    entry["received_at"] = as_text(r["received_at"])
    return entry


class FeedStore(Queries):
    """Poll state and the quarantine's reads, the same SQL on both databases."""

    async def quarantine(self, *, origin: str, ref: str, reason: str, payload: str,
                         now: datetime, incident: str | None = None) -> bool:
        """Keep what could not be understood, verbatim. False if this exact thing is
        already there (a feed that keeps showing a broken item). An incident id (the
        crash barrier's, also in its log line) is kept with the reason but is not part of
        what makes two entries the same."""
        digest = hashlib.sha256(f"{ref}\0{reason}\0{payload}".encode("utf-8", "replace")
                                ).hexdigest()
        if incident:
            reason = f"{reason} (incident {incident})"
        payload = payload.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
        return await self._write(
            "INSERT INTO quarantine (origin, ref, reason, payload, received_at, digest) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, digest) DO NOTHING",
            (origin, self.storable(ref), self.storable(reason), self.storable(payload), now,
             digest)) > 0

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

    async def list_quarantine(self, *, origin: str | None = None, limit: int = 100,
                              offset: int = 0) -> tuple[list[dict[str, object]], int]:
        """What could not be understood, newest first (for operators)."""
        where, params = where_equal(("origin", origin))
        rows, total = await self._page("quarantine", where, params, "id DESC", limit, offset)
        return [quarantined_entry(r) for r in rows], total

    async def drop_quarantined(self, entry_id: int) -> bool:
        """An operator has looked at it: gone (the source or the queue still has its own
        copy, and a feed item still broken is quarantined again at its next poll)."""
        return await self._write("DELETE FROM quarantine WHERE id = ?", (entry_id,)) > 0

    async def quarantined(self, origin: str | None = None) -> list[dict[str, object]]:
        sql = "SELECT id, origin, ref, reason, payload, received_at FROM quarantine"
        rows = await (self._all(sql + " WHERE origin = ? ORDER BY id", (origin,)) if origin
                      else self._all(sql + " ORDER BY id"))
        return [quarantined_entry(r) for r in rows]
