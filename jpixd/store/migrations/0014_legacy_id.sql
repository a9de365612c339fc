-- The old system's own id of a subscriber (issue 23), mapped at import or sync: its
-- unsubscribe links, in mails it sent before the switch, carry it.
-- older releases: compatible
ALTER TABLE subscribers ADD COLUMN legacy_id TEXT NOT NULL DEFAULT '';
CREATE INDEX subscribers_legacy_id ON subscribers (legacy_id) WHERE legacy_id <> '';
