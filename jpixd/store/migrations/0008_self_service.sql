-- Self-service (issue 14): a subscriber may pause mail without leaving, and every
-- change to a subscriber (who, what, when) is kept for operators to see.
ALTER TABLE subscribers ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
CREATE TABLE subscriber_changes (
    id              INTEGER PRIMARY KEY,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id),
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX subscriber_changes_by_subscriber ON subscriber_changes (subscriber_id, id);
-- The console's chart (mails sent per hour over a week) and the guard's sent count read
-- sent mail by time: without this, both walk every sent row.
CREATE INDEX deliveries_sent_at ON deliveries (sent_at) WHERE state = 'sent';
