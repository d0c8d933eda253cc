-- Events of the contacts feed the consumer could not apply are set aside
-- here (see rapport_events::consumer::schema_sql), so the rest flows.
CREATE TABLE feedback.dead_letters (
    consumer  text        NOT NULL,
    position  bigint      NOT NULL,
    envelope  bytea       NOT NULL,
    error     text        NOT NULL,
    attempts  integer     NOT NULL,
    dead_time timestamptz NOT NULL,
    PRIMARY KEY (consumer, position)
);
ALTER TABLE feedback.dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON feedback.dead_letters
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.dead_letters TO rapport_feedback;

-- The snapshot a new consumer of the feedback feed starts from
-- (rapport.events.v1 GetSnapshot) reads every tenant's completed responses
-- with their answers, invitations and surveys, read-only, with app.feed
-- on: the setting the sequencer and the feed use for the outbox. The
-- tenant function errors without a tenant, except in feed mode, where it
-- matches no tenant and only the feed policy admits rows, for reading.
CREATE OR REPLACE FUNCTION feedback.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN current_setting('app.feed', true) = 'on' THEN NULL
                    ELSE current_setting('app.tenant_id')::uuid END
    $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['responses', 'answers', 'invitations', 'surveys']
    LOOP
        EXECUTE format('CREATE POLICY feed_snapshot ON feedback.%I FOR SELECT
                            USING (current_setting(''app.feed'', true) = ''on'')', t);
    END LOOP;
END
$$;
