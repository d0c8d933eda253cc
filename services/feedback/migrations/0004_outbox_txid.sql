-- The sequencer finds unpositioned events by the transaction that wrote
-- them. Positioned events keep their entries in a partial index on
-- "position IS NULL" until a vacuum, and those entries all sort before the
-- new ones, so a scan by event id walked over every event positioned since
-- the last vacuum on each pass. By transaction, a pass starts at the oldest
-- transaction still running at the previous complete pass instead.
ALTER TABLE feedback.outbox ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE feedback.outbox ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX outbox_unpositioned_txid_idx ON feedback.outbox (txid) WHERE position IS NULL;
DROP INDEX feedback.outbox_unpositioned_idx;
