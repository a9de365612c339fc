-- As SQLite's 0020: a subscriber's deliveries found by the subscriber alone, so that a
-- change of a delivery's state no longer moves its entry in this index.
-- older releases: compatible
DROP INDEX deliveries_subscriber;
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
