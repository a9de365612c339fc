-- A fan-out writes tens of thousands of deliveries in one statement. PostgreSQL checks a
-- foreign key row by row, locking each parent row (FOR KEY SHARE): for 76,000 deliveries
-- that was 1.2 s of a 2.7 s fan-out to 100,000 subscribers (bench postgres), past the
-- 2 s target. The parents are never deleted while a delivery points at them: notices
-- are kept, subscribers are deleted softly (retention removes only never-confirmed
-- sign-ups, which have no deliveries), and retention removes deliveries before the
-- revisions they belong to (a revision only once nothing points at it). SQLite keeps its
-- foreign keys: its checks cost little.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_revision_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_notice_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subscriber_id_fkey;
