"""SQLite: the archive's triggers (one JSON record per change, written by the change's
own statement) and the fan-out's records, in chunks (`jpixd.store.archive`)."""

from __future__ import annotations

import sqlite3

from jpixd.store.archive import CREATED_CHUNK, SUPERSEDED_CHUNK, ArchiveQueries
from jpixd.store.sqlite.base import SqliteBase


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


# A channel message's end (sent, failed, skipped): what went where, never its URL.
_CHANNEL_MESSAGE = ("json_object('type', 'channel_message', 'id', NEW.id, 'channel_id', "
                    "NEW.channel_id, 'kind', NEW.kind, 'purpose', NEW.purpose, 'notice_id', "
                    "NEW.notice_id, 'state', NEW.state, 'reason', NEW.reason, 'attempts', "
                    "NEW.attempts, 'status', NEW.last_status, 'at', NEW.updated_at)")


def _trigger(name: str, when: str, record: str, at: str) -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS archive_{name} {when} BEGIN "
            f"INSERT INTO archive_outbox (record, created_at) VALUES ({record}, {at}); END")


CREATED_SQL = f"""
INSERT INTO archive_outbox (record, created_at)
SELECT json_object('type', 'deliveries_created', 'notice_id', MIN(notice_id),
                   'revision_id', MIN(revision_id), 'state', 'pending', 'count', COUNT(*),
                   'deliveries', json_group_array(json_array(id, subscriber_id, email,
                                                             purpose, slot, not_before)),
                   'at', MIN(created_at)),
       MIN(created_at)
FROM (SELECT * FROM deliveries WHERE revision_id = ?1 ORDER BY id)
GROUP BY (id - (SELECT MIN(id) FROM deliveries WHERE revision_id = ?1)) / {CREATED_CHUNK}
ORDER BY MIN(id)
"""


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
    # Self-service mail is asked for a row at a time (a fan-out's rows are recorded in
    # chunks, CREATED_SQL); its later states are any delivery's.
    "self_mail_new": _trigger("self_mail_new", "AFTER INSERT ON deliveries FOR EACH ROW "
                              "WHEN NEW.purpose IN ('confirm', 'manage')", _delivery("NEW"),
                              "NEW.created_at"),
    "channel_message_state": _trigger(
        "channel_message_state", "AFTER UPDATE OF state ON channel_messages FOR EACH ROW "
        "WHEN NEW.state IS NOT OLD.state", _CHANNEL_MESSAGE, "NEW.updated_at"),
}


class ArchiveStore(ArchiveQueries, SqliteBase):
    created_records_sql = CREATED_SQL
    superseded_records_sql = SUPERSEDED_SQL

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
