-- A subscriber's deliveries are found by the subscriber alone (issue 24, speed): with
-- the state in the index too, every change of a delivery's state (claimed, sent,
-- superseded) moved its entry, for queries that read a subscriber's few rows anyway.
-- older releases: compatible
DROP INDEX deliveries_subscriber;
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
