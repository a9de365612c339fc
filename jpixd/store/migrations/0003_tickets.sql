-- What the Backlog reconciler needs to run the tickets' life cycle.

-- The bounce that opened a bounce case (guard cases have none).
ALTER TABLE tickets ADD COLUMN event_id INTEGER REFERENCES mail_events (id);
-- The case's latest event: the last bounce of the address, or the guard's pause. A
-- suppressed address's issue closes auto_close_after past it.
ALTER TABLE tickets ADD COLUMN last_event_at TEXT;
-- Set (and committed) just before a create or close call: a row that has it may have
-- reached Backlog already, so the reconciler looks before it calls again.
ALTER TABLE tickets ADD COLUMN attempted_at TEXT;
-- A call Backlog refused (a 4xx other than 429): why, and when to try again.
ALTER TABLE tickets ADD COLUMN last_error TEXT;
ALTER TABLE tickets ADD COLUMN next_try_at TEXT;
ALTER TABLE tickets ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;

-- One open case per bounced address; a repeat bounce comments on it.
CREATE UNIQUE INDEX tickets_open_bounce ON tickets (email)
    WHERE kind = 'bounce' AND state IN ('intent', 'open');

-- Same rule for comments: a row with attempted_at may have been posted; its marker
-- is looked for among the issue's comments before it is posted again.
ALTER TABLE ticket_comments ADD COLUMN attempted_at TEXT;
ALTER TABLE ticket_comments ADD COLUMN marker TEXT;
-- A comment for an issue that was deleted or closed by hand is not posted.
ALTER TABLE ticket_comments ADD COLUMN dropped_at TEXT;
