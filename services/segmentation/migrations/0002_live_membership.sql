-- Membership kept current per change: segmentation produces its own feed
-- (segment.entered / segment.exited), time sweeps apply windows' edges,
-- and the history is read page by page.

-- The outbox, exactly as rapport_events::outbox::schema_sql defines it.
CREATE TABLE segmentation.outbox (
    tenant_id    uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    position     bigint,
    type         text        NOT NULL,
    aggregate_id uuid        NOT NULL,
    occur_time   timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    traceparent  text,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE UNIQUE INDEX outbox_position_key ON segmentation.outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unpositioned_txid_idx ON segmentation.outbox (txid) WHERE position IS NULL;
CREATE INDEX outbox_aggregate_idx ON segmentation.outbox (tenant_id, aggregate_id);

CREATE TABLE segmentation.outbox_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position  bigint  NOT NULL,
    pruned_through bigint  NOT NULL
);
INSERT INTO segmentation.outbox_state VALUES (true, 0, 0);

ALTER TABLE segmentation.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON segmentation.outbox
    USING (current_setting('app.feed', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (current_setting('app.feed', true) = 'on'
                OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE segmentation.outbox_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.outbox_state FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON segmentation.outbox_state USING (current_setting('app.feed', true) = 'on');

GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.outbox TO rapport_segmentation;
GRANT SELECT, UPDATE ON segmentation.outbox_state TO rapport_segmentation;

-- The feed's snapshot reads every tenant's memberships, read-only, with
-- app.feed on (the setting the sequencer and the feed use).
CREATE POLICY feed_snapshot ON segmentation.memberships FOR SELECT
    USING (current_setting('app.feed', true) = 'on');

-- History read page by page, newest first.
ALTER TABLE segmentation.membership_changes ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
DROP INDEX segmentation.membership_changes_segment_idx;
DROP INDEX segmentation.membership_changes_contact_idx;
CREATE INDEX membership_changes_segment_idx
    ON segmentation.membership_changes (tenant_id, segment_id, id);
CREATE INDEX membership_changes_contact_idx
    ON segmentation.membership_changes (tenant_id, contact_id, id);

-- Time sweeps: per segment whose rule has a window relative to now, the
-- moment up to which time's effects are applied. Ids and times only: the
-- sweeper lists them with no tenant set.
CREATE TABLE segmentation.sweeps (
    tenant_id   uuid        NOT NULL,
    segment_id  uuid        NOT NULL,
    swept_until timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, segment_id)
);
CREATE INDEX sweeps_swept_until_idx ON segmentation.sweeps (swept_until);
ALTER TABLE segmentation.sweeps ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.sweeps FORCE ROW LEVEL SECURITY;
CREATE POLICY sweeper ON segmentation.sweeps FOR SELECT
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
CREATE POLICY tenant_isolation ON segmentation.sweeps
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.sweeps TO rapport_segmentation;

-- Sweeps of "created in the last N days" find the profiles by date.
CREATE INDEX profiles_create_time_idx ON segmentation.profiles (tenant_id, create_time);

-- Both evaluators read a time without an offset as UTC, whatever the
-- server's time zone.
ALTER FUNCTION segmentation.attribute_time(jsonb) SET TimeZone = 'UTC';
