-- The feedback change feed (see rapport-events): events written with the
-- change that caused them, positioned after commit by the sequencer.

CREATE TABLE feedback.outbox (
    tenant_id    uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    position     bigint,
    type         text        NOT NULL,
    aggregate_id uuid        NOT NULL,
    occur_time   timestamptz NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE UNIQUE INDEX outbox_position_key ON feedback.outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unpositioned_idx ON feedback.outbox (event_id) WHERE position IS NULL;
CREATE INDEX outbox_aggregate_idx ON feedback.outbox (tenant_id, aggregate_id);

-- One row: the newest position given, and the newest pruned.
CREATE TABLE feedback.outbox_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position  bigint  NOT NULL,
    pruned_through bigint  NOT NULL
);
INSERT INTO feedback.outbox_state VALUES (true, 0, 0);

-- A tenant sees its own events; the sequencer and the feed, which serve
-- every tenant, set app.feed.
ALTER TABLE feedback.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON feedback.outbox
    USING (current_setting('app.feed', true) = 'on'
           OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (current_setting('app.feed', true) = 'on'
                OR tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- Not tenant data: one row of counters for the whole feed.
ALTER TABLE feedback.outbox_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.outbox_state FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON feedback.outbox_state USING (current_setting('app.feed', true) = 'on');

GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.outbox TO rapport_feedback;
GRANT SELECT, UPDATE ON feedback.outbox_state TO rapport_feedback;
