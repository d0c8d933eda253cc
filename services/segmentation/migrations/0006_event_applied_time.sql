-- When segmentation applied each event, on its own clock: the batch that
-- applied it judged the contact at that moment, so an event dated before
-- it was counted then, and only one dated at or after it (ahead of its
-- time) needs a time sweep when its date comes. Without this every
-- freshly recorded event was judged twice: once by its batch, once more
-- by every sweep whose window its date fell in.
ALTER TABLE segmentation.events ADD COLUMN applied_time timestamptz;
-- Rows from before: those still dated ahead are marked as such.
UPDATE segmentation.events SET applied_time = '-infinity' WHERE occur_time > now();
CREATE INDEX events_ahead_idx ON segmentation.events (tenant_id, type, occur_time)
    INCLUDE (contact_id) WHERE occur_time >= applied_time;
