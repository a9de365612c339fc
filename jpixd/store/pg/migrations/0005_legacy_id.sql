-- As SQLite's 0014 (issue 23): the old system's id of a subscriber, for its links.
-- older releases: compatible
ALTER TABLE subscribers ADD COLUMN legacy_id text NOT NULL DEFAULT '';
CREATE INDEX subscribers_legacy_id ON subscribers (legacy_id) WHERE legacy_id <> '';
