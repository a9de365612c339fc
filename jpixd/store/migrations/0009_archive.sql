-- The event archive (issue 15): one row per change to archive, written by triggers in
-- the same transaction as the change (jpixd/store/archive.py installs them when
-- [archive] is configured), deleted once the sink has accepted it. Its id is the
-- record's sequence number: commit order.
CREATE TABLE archive_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
