-- Whether a bounce is soft is decided once, in Python (jpixd.bounces.rules.is_soft_bounce),
-- as the event is recorded; the soft-bounce window counts this flag. Both backends then
-- share the one rule instead of each holding its own copy in SQL. Events recorded before
-- are flagged by the rule as it stood (a Transient or Undetermined bounce).
ALTER TABLE mail_events ADD COLUMN soft INTEGER NOT NULL DEFAULT 0;
UPDATE mail_events SET soft = 1 WHERE type = 'Bounce'
    AND (subtype LIKE 'Transient%' OR subtype LIKE 'Undetermined%');
CREATE INDEX mail_events_soft ON mail_events (recipient, occurred_at) WHERE soft = 1;
