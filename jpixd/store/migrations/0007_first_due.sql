-- When a delivery first became due, kept across retries: the stalled-mail gauge
-- (outbox_oldest_pending_age_seconds) measures from here, so mail retrying for hours
-- looks hours old instead of starting afresh at every retry.
ALTER TABLE deliveries ADD COLUMN first_due_at TEXT;
UPDATE deliveries SET first_due_at = not_before;
CREATE INDEX deliveries_waiting ON deliveries (first_due_at)
    WHERE state IN ('pending', 'retry', 'sending');
