-- As SQLite's 0012: whether a bounce is soft is decided in Python as the event is
-- recorded (jpixd.bounces.rules.is_soft_bounce), and the soft-bounce window counts it.
ALTER TABLE mail_events ADD COLUMN soft boolean NOT NULL DEFAULT false;
UPDATE mail_events SET soft = true WHERE type = 'Bounce'
    AND (subtype LIKE 'Transient%' OR subtype LIKE 'Undetermined%');
CREATE INDEX mail_events_soft ON mail_events (recipient, occurred_at) WHERE soft;
