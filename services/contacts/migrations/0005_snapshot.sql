-- The snapshot a new consumer of the contacts feed starts from
-- (rapport.events.v1 GetSnapshot) reads every tenant's contacts, histories,
-- timeline, merges and erasures, read-only, with app.feed on: the same
-- setting the sequencer and the feed use for the outbox.
--
-- The tenant function errors without a tenant (never "all rows"), except
-- in feed mode, where it matches no tenant and only the feed policy below
-- admits rows, for reading.
CREATE OR REPLACE FUNCTION contacts.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN current_setting('app.feed', true) = 'on' THEN NULL
                    ELSE current_setting('app.tenant_id')::uuid END
    $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['contacts', 'lifecycle_history', 'consent_history', 'events',
                             'merges', 'erasures']
    LOOP
        EXECUTE format('CREATE POLICY feed_snapshot ON contacts.%I FOR SELECT
                            USING (current_setting(''app.feed'', true) = ''on'')', t);
    END LOOP;
END
$$;
