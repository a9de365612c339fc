-- As SQLite's 0021: a notice's deliveries found by the notice alone, and the stalled-mail
-- monitor's oldest waiting time read from the claim's own index (which now carries
-- `first_due_at`) instead of an index of its own: one index fewer for each of a fan-out's
-- rows to enter.
-- older releases: compatible (their monitor query reads the waiting rows by the state index)
DROP INDEX deliveries_notice;
CREATE INDEX deliveries_notice ON deliveries (notice_id);
DROP INDEX deliveries_waiting;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (priority, not_before, id, first_due_at)
    WHERE state IN ('pending', 'retry');
