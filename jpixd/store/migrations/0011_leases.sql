-- Leases (SPEC §2): a claimed delivery carries who claimed it and until when. The
-- claimer renews the lease while the send is in flight; any sender may take over a row
-- whose lease has expired (its sender died), which is how mail stranded by a crash goes
-- out again without waiting for a restart.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'sending';
