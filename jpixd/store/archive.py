"""The event archive's outbox: triggers that write one JSON record per change in the
same transaction as the change, and the reads and deletes the archive loop makes.

Triggers, rather than a call in every store method: a change cannot reach the database
without its record, whichever code path (a loop, the admin API, a CLI import) made it.
They exist only while `[archive]` is configured (`set_archiving`), so a daemon without
an archive pays nothing for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from jpixd.store.base import Queries, Row, SqliteBase, from_db, marks, to_db


def _delivery(prefix: str) -> str:
    return (f"json_object('type', 'delivery', 'id', {prefix}.id, 'notice_id', "
            f"{prefix}.notice_id, 'subscriber_id', {prefix}.subscriber_id, 'email', "
            f"{prefix}.email, 'purpose', {prefix}.purpose, 'state', {prefix}.state, "
            f"'reason', {prefix}.reason, 'attempts', {prefix}.attempts, 'transport', "
            f"{prefix}.transport, 'ses_message_id', {prefix}.ses_message_id, 'at', "
            f"{prefix}.updated_at)")


_EVENT = ("json_object('type', 'mail_event', 'id', NEW.id, 'event', NEW.type, 'subtype', "
          "NEW.subtype, 'recipient', NEW.recipient, 'ses_message_id', NEW.ses_message_id, "
          "'delivery_id', NEW.delivery_id, 'diagnostic', NEW.diagnostic, 'at', "
          "NEW.occurred_at, 'received_at', NEW.received_at)")
_SUPPRESSION = ("json_object('type', 'suppression', 'email', NEW.email, 'reason', NEW.reason, "
                "'lifted_at', NEW.lifted_at, 'lifted_by', NEW.lifted_by, 'at', "
                "COALESCE(NEW.lifted_at, NEW.last_event_at))")
_SENDING = ("json_object('type', 'sending', 'state', json(NEW.value), 'at', NEW.updated_at)")
_TICKET = ("json_object('type', 'backlog', 'action', 'case_' || NEW.state, 'ticket_id', "
           "NEW.id, 'kind', NEW.kind, 'email', NEW.email, 'issue_key', NEW.issue_key, "
           "'close_reason', NEW.close_reason, 'at', NEW.updated_at)")
_COMMENT = ("json_object('type', 'backlog', 'action', 'comment_posted', 'ticket_id', "
            "NEW.ticket_id, 'comment_id', NEW.id, 'at', NEW.posted_at)")

_SELF_MAIL = ("json_object('type', 'self_mail', 'id', NEW.id, 'kind', NEW.kind, "
              "'subscriber_id', NEW.subscriber_id, 'email', NEW.email, 'state', NEW.state, "
              "'reason', NEW.reason, 'attempts', NEW.attempts, 'transport', NEW.transport, "
              "'ses_message_id', NEW.ses_message_id, 'at', "
              "COALESCE(NEW.updated_at, NEW.created_at))")

# A channel message's end (sent, failed, skipped): what went where, never its URL.
_CHANNEL_MESSAGE = ("json_object('type', 'channel_message', 'id', NEW.id, 'channel_id', "
                    "NEW.channel_id, 'kind', NEW.kind, 'purpose', NEW.purpose, 'notice_id', "
                    "NEW.notice_id, 'state', NEW.state, 'reason', NEW.reason, 'attempts', "
                    "NEW.attempts, 'status', NEW.last_status, 'at', NEW.updated_at)")


def _trigger(name: str, when: str, record: str, at: str) -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS archive_{name} {when} BEGIN "
            f"INSERT INTO archive_outbox (record, created_at) VALUES ({record}, {at}); END")


# A fan-out creates tens of thousands of deliveries in one statement: their creation is
# archived by the fan-out itself, one record per CREATED_CHUNK deliveries (see
# `created_records`), not by a trigger per row, which doubled a 100k fan-out's time.
# 2,000 deliveries with the longest addresses stay under Firehose's 1,000 KiB a record.
CREATED_CHUNK = 2000
CREATED_SQL = f"""
INSERT INTO archive_outbox (record, created_at)
SELECT json_object('type', 'deliveries_created', 'notice_id', MIN(notice_id),
                   'revision_id', MIN(revision_id), 'state', 'pending', 'count', COUNT(*),
                   'deliveries', json_group_array(json_array(id, subscriber_id, email,
                                                             purpose, slot, not_before)),
                   'at', MIN(created_at)),
       MIN(created_at)
FROM (SELECT * FROM deliveries WHERE revision_id = ? ORDER BY id)
GROUP BY (id - (SELECT MIN(id) FROM deliveries WHERE revision_id = ?)) / {CREATED_CHUNK}
ORDER BY MIN(id)
"""

# Likewise the rows a new revision supersedes (a 第2報 to 76k recipients skips the 76k
# unsent mails of the first): one record per SUPERSEDED_CHUNK ids.
SUPERSEDED_CHUNK = 20000
SUPERSEDED_SQL = f"""
INSERT INTO archive_outbox (record, created_at)
SELECT json_object('type', 'deliveries_superseded', 'notice_id', MIN(notice_id),
                   'state', 'skipped', 'reason', 'superseded', 'count', COUNT(*),
                   'ids', json_group_array(id), 'at', MIN(updated_at)),
       MIN(updated_at)
FROM (SELECT id, notice_id, updated_at FROM deliveries WHERE notice_id = ?
      AND state = 'skipped' AND reason = 'superseded' AND updated_at = ? ORDER BY id)
GROUP BY id / {SUPERSEDED_CHUNK}
ORDER BY MIN(id)
"""

TRIGGERS: dict[str, str] = {
    "delivery_state": _trigger(
        "delivery_state", "AFTER UPDATE OF state ON deliveries FOR EACH ROW "
        "WHEN NEW.state IS NOT OLD.state AND NOT (NEW.state = 'skipped' "
        "AND NEW.reason IS 'superseded')", _delivery("NEW"), "NEW.updated_at"),
    "mail_event": _trigger("mail_event", "AFTER INSERT ON mail_events FOR EACH ROW",
                           _EVENT, "NEW.received_at"),
    "suppression_new": _trigger("suppression_new",
                                "AFTER INSERT ON suppressions FOR EACH ROW", _SUPPRESSION,
                                "NEW.created_at"),
    "suppression_change": _trigger(
        "suppression_change", "AFTER UPDATE ON suppressions FOR EACH ROW WHEN "
        "NEW.lifted_at IS NOT OLD.lifted_at OR NEW.reason IS NOT OLD.reason",
        _SUPPRESSION, "COALESCE(NEW.lifted_at, NEW.last_event_at)"),
    "sending_new": _trigger("sending_new", "AFTER INSERT ON control FOR EACH ROW "
                            "WHEN NEW.key = 'sending'", _SENDING, "NEW.updated_at"),
    "sending_change": _trigger("sending_change", "AFTER UPDATE ON control FOR EACH ROW "
                               "WHEN NEW.key = 'sending'", _SENDING, "NEW.updated_at"),
    "ticket_new": _trigger("ticket_new", "AFTER INSERT ON tickets FOR EACH ROW", _TICKET,
                           "NEW.updated_at"),
    "ticket_state": _trigger("ticket_state", "AFTER UPDATE OF state ON tickets FOR EACH ROW "
                             "WHEN NEW.state IS NOT OLD.state", _TICKET, "NEW.updated_at"),
    "comment_posted": _trigger(
        "comment_posted", "AFTER UPDATE OF posted_at ON ticket_comments FOR EACH ROW "
        "WHEN NEW.posted_at IS NOT NULL AND OLD.posted_at IS NULL", _COMMENT,
        "NEW.posted_at"),
    "self_mail_new": _trigger("self_mail_new", "AFTER INSERT ON self_mails FOR EACH ROW",
                              _SELF_MAIL, "NEW.created_at"),
    "self_mail_state": _trigger(
        "self_mail_state", "AFTER UPDATE OF state ON self_mails FOR EACH ROW "
        "WHEN NEW.state IS NOT OLD.state", _SELF_MAIL,
        "COALESCE(NEW.updated_at, NEW.created_at)"),
    "channel_message_state": _trigger(
        "channel_message_state", "AFTER UPDATE OF state ON channel_messages FOR EACH ROW "
        "WHEN NEW.state IS NOT OLD.state", _CHANNEL_MESSAGE, "NEW.updated_at"),
}


def batch_lines(rows: Sequence[Row], max_bytes: int) -> list[tuple[int, str]]:
    """(sequence, JSON line) for each record, its sequence put first, until `max_bytes`
    (at least one, whatever its size: the sink says if it is too large)."""
    out: list[tuple[int, str]] = []
    size = 0
    for r in rows:
        line = f'{{"seq":{r["id"]},{r["record"][1:]}\n'
        size += len(line.encode())
        if out and size > max_bytes:
            break
        out.append((int(r["id"]), line))
    return out


class ArchiveQueries(Queries):
    """The archive loop's reads and deletes, the same SQL on both databases."""

    async def archive_batch(self, limit: int, max_bytes: int) -> list[tuple[int, str]]:
        """The oldest queued records, (sequence, JSON line), at most `limit` of them and
        `max_bytes` in all (Firehose's batch limits)."""
        # The record as text on both databases (jsonb's own text on PostgreSQL).
        rows = await self._all("SELECT id, CAST(record AS TEXT) AS record FROM archive_outbox "
                               "ORDER BY id LIMIT ?", (limit,))
        return batch_lines(rows, max_bytes)

    async def archive_done(self, seqs: list[int]) -> None:
        """Accepted by the sink: gone from the outbox."""
        if not seqs:
            return
        await self._write(f"DELETE FROM archive_outbox WHERE id IN ({marks(seqs)})", seqs)

    async def archive_pending(self) -> tuple[int, datetime | None]:
        """(records queued, when the oldest was written)."""
        row = await self._one("SELECT COUNT(*) AS n, MIN(created_at) AS t FROM archive_outbox")
        if row is None or not row["n"]:
            return 0, None
        return int(row["n"]), from_db(row["t"])


class ArchiveStore(ArchiveQueries, SqliteBase):
    async def set_archiving(self, on: bool) -> None:
        """Install the archive's triggers, or remove them (and keep what is queued: an
        archive switched off keeps its backlog until it is switched on again)."""
        def body(db: sqlite3.Connection) -> None:
            db.execute("DROP TRIGGER IF EXISTS archive_delivery_new")  # an older design's
            for name, sql in TRIGGERS.items():  # dropped first: a definition may change
                db.execute(f"DROP TRIGGER IF EXISTS archive_{name}")
                if on:
                    db.execute(sql)

        await self._tx_sync(body)
        self.archiving = on

    async def archive_marker(self, kind: str, now: datetime) -> None:
        """A record of our own (the archive's start, a cut-over): same path, same order."""
        await self._write("INSERT INTO archive_outbox (record, created_at) VALUES "
                          "(json_object('type', ?, 'at', ?), ?)", (kind, to_db(now), to_db(now)))
