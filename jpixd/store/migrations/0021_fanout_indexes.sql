-- A fan-out writes tens of thousands of deliveries at once, and the notice's next
-- revision supersedes them all at once: every index on `deliveries` is paid for per row,
-- twice over (issue 24, speed). Two of them cost more there than they gave:
--
-- * `deliveries_notice` kept the state beside the notice, so a supersede moved every
--   entry of the notice's rows. The queries by notice (supersede, cancel its reminders,
--   its counts) read the notice's rows anyway: the notice alone finds them.
-- * `deliveries_waiting` existed for one query, the stalled-mail monitor's oldest
--   waiting time. The claim's own index finds the waiting rows for it and now carries
--   their `first_due_at` as a last column (8 ms for 76,000 waiting rows).
--
-- Measured on a 100k fan-out (76,149 rows): the insert 0.53 -> 0.44 s of CPU, the next
-- revision's supersede 0.50 -> 0.29 s.
-- older releases: compatible (their monitor query reads the waiting rows by the state index)
DROP INDEX deliveries_notice;
CREATE INDEX deliveries_notice ON deliveries (notice_id);
DROP INDEX deliveries_waiting;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (priority, not_before, id, first_due_at)
    WHERE state IN ('pending', 'retry');
