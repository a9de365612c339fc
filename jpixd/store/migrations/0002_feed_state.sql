-- What a list (NTT West's RSS) last said about a notice: when it changes, the detail
-- page is fetched again; when it does not, the poller does not fetch it.
ALTER TABLE notices ADD COLUMN fingerprint TEXT;

-- A malformed item is quarantined once, not on every poll that still shows it.
ALTER TABLE quarantine ADD COLUMN digest TEXT;
CREATE UNIQUE INDEX quarantine_digest ON quarantine (origin, digest);
