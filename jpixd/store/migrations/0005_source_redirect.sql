-- A remembered permanent redirect holds only for the configured URL it was learnt from:
-- an operator who changes `url` must not be overruled by an old 301 (security probe M2).
ALTER TABLE source_state ADD COLUMN permanent_for TEXT;
