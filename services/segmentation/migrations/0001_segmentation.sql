-- The segmentation schema. Every tenant-owned table leads its keys with
-- tenant_id and has a row-level-security policy; the service logs in as
-- rapport_segmentation, which owns nothing and does not bypass RLS.

DO $$
BEGIN
    CREATE ROLE rapport_segmentation LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION
    -- Another database of the same cluster created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA segmentation TO rapport_segmentation;

-- Errors (never matches every row) when the transaction did not set a tenant.
CREATE FUNCTION segmentation.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT current_setting('app.tenant_id')::uuid $$;
GRANT EXECUTE ON FUNCTION segmentation.current_tenant() TO rapport_segmentation;

-- Projections of the contacts and feedback feeds, shaped for the set-based
-- queries rules compile to.

-- One row per live contact: what profile, tag, stage and consent leaves read.
CREATE TABLE segmentation.profiles (
    tenant_id    uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    -- Lower case; '' without an email address.
    email_domain text        NOT NULL,
    locale       text        NOT NULL,
    time_zone    text        NOT NULL,
    create_time  timestamptz NOT NULL,
    attributes   jsonb       NOT NULL,
    tags         text[]      NOT NULL,
    stage        smallint    NOT NULL,
    -- Consent state (rapport.segmentation.v1.ConsentState) by channel
    -- number, from 1: consents[channel].
    consents     smallint[]  NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Every lifecycle stage a contact entered, and when.
CREATE TABLE segmentation.stage_changes (
    tenant_id   uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    stage       smallint    NOT NULL,
    change_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, change_time, stage)
);
CREATE INDEX stage_changes_stage_idx ON segmentation.stage_changes (tenant_id, stage, change_time);

-- The timelines. The key serves one contact's history (explain, merge,
-- erasure); the second index serves "who did X in the window".
CREATE TABLE segmentation.events (
    tenant_id  uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    type       text        NOT NULL,
    occur_time timestamptz NOT NULL,
    event_id   uuid        NOT NULL,
    channel    smallint    NOT NULL,
    -- NULL without properties.
    properties jsonb,
    -- Revenue in currency units; NULL without revenue.
    currency   text,
    revenue    numeric,
    PRIMARY KEY (tenant_id, contact_id, type, occur_time, event_id)
);
CREATE INDEX events_type_idx ON segmentation.events (tenant_id, type, occur_time) INCLUDE (contact_id);

-- Scored feedback answers (NPS, CSAT, CES) of known contacts.
CREATE TABLE segmentation.answers (
    tenant_id   uuid        NOT NULL,
    response_id uuid        NOT NULL,
    question_id text        NOT NULL,
    contact_id  uuid        NOT NULL,
    -- rapport.segmentation.v1.ScoreKind
    kind        smallint    NOT NULL,
    score       integer     NOT NULL,
    answer_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, response_id, question_id)
);
CREATE INDEX answers_contact_idx ON segmentation.answers (tenant_id, contact_id, kind, answer_time);
CREATE INDEX answers_kind_idx ON segmentation.answers (tenant_id, kind, answer_time) INCLUDE (contact_id, score);

-- Contacts deleted or erased: answers about them that arrive later on the
-- feedback feed (which follows its own pace) are not kept.
CREATE TABLE segmentation.forgotten_contacts (
    tenant_id  uuid NOT NULL,
    contact_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Segments: dynamic (a rule) or lists.
CREATE TABLE segmentation.segments (
    tenant_id         uuid        NOT NULL,
    id                uuid        NOT NULL,
    name              text        NOT NULL,
    description       text        NOT NULL,
    kind              smallint    NOT NULL,
    -- A rapport.segmentation.v1.Rule; NULL for lists.
    rule              bytea,
    rule_version      bigint      NOT NULL,
    revision          bigint      NOT NULL DEFAULT 1,
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL,
    archive_time      timestamptz,
    purge_time        timestamptz,
    member_count      bigint      NOT NULL DEFAULT 0,
    -- The latest build (dynamic segments).
    build_state       smallint    NOT NULL,
    built_version     bigint      NOT NULL DEFAULT 0,
    build_finish_time timestamptz,
    entered_count     bigint      NOT NULL DEFAULT 0,
    exited_count      bigint      NOT NULL DEFAULT 0,
    build_millis      bigint      NOT NULL DEFAULT 0,
    build_error       text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id)
);

-- Which segments a segment's rule names: refuses cycles and archiving a
-- segment in use.
CREATE TABLE segmentation.segment_references (
    tenant_id     uuid NOT NULL,
    segment_id    uuid NOT NULL,
    referenced_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, referenced_id)
);
CREATE INDEX segment_references_referenced_idx
    ON segmentation.segment_references (tenant_id, referenced_id);

CREATE TABLE segmentation.memberships (
    tenant_id    uuid        NOT NULL,
    segment_id   uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    enter_time   timestamptz NOT NULL,
    rule_version bigint      NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, contact_id)
);
CREATE INDEX memberships_contact_idx ON segmentation.memberships (tenant_id, contact_id);

-- A custom attribute read as a moment: its RFC 3339 text, or NULL when it
-- is not one (a rule never fails on a contact's odd data).
CREATE FUNCTION segmentation.attribute_time(value jsonb) RETURNS timestamptz
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
BEGIN
    IF jsonb_typeof(value) <> 'string' OR value #>> '{}' !~ '^\d{4}-\d{2}-\d{2}' THEN
        RETURN NULL;
    END IF;
    RETURN (value #>> '{}')::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
GRANT EXECUTE ON FUNCTION segmentation.attribute_time(jsonb) TO rapport_segmentation;

-- Every entry and exit.
CREATE TABLE segmentation.membership_changes (
    tenant_id    uuid        NOT NULL,
    segment_id   uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    entered      boolean     NOT NULL,
    change_time  timestamptz NOT NULL,
    rule_version bigint      NOT NULL,
    -- `build` or `list`.
    cause        text        NOT NULL
);
CREATE INDEX membership_changes_segment_idx
    ON segmentation.membership_changes (tenant_id, segment_id, change_time);
CREATE INDEX membership_changes_contact_idx
    ON segmentation.membership_changes (tenant_id, contact_id);

CREATE TABLE segmentation.idempotency_keys (
    tenant_id    uuid        NOT NULL,
    operation    text        NOT NULL,
    request_id   text        NOT NULL,
    request_hash bytea       NOT NULL,
    response     bytea       NOT NULL,
    subject_ids  uuid[]      NOT NULL DEFAULT '{}',
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, operation, request_id)
);
CREATE INDEX idempotency_keys_create_time_idx ON segmentation.idempotency_keys (tenant_id, create_time);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['profiles', 'stage_changes', 'events', 'answers',
                             'forgotten_contacts', 'segment_references', 'memberships', 'membership_changes',
                             'idempotency_keys']
    LOOP
        EXECUTE format('ALTER TABLE segmentation.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE segmentation.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON segmentation.%I
                            USING (tenant_id = segmentation.current_tenant())
                            WITH CHECK (tenant_id = segmentation.current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.%I TO rapport_segmentation', t);
    END LOOP;
END
$$;

-- A consumer whose cursor fell behind the retained feed forgets its
-- projection before loading the snapshot again: with app.projection_reset
-- on (and no tenant), it may delete every tenant's projected rows.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['profiles', 'stage_changes', 'events', 'answers']
    LOOP
        EXECUTE format('CREATE POLICY projection_reset ON segmentation.%I FOR DELETE
                            USING (current_setting(''app.projection_reset'', true) = ''on'')', t);
    END LOOP;
END
$$;

-- Segments waiting for a build. Holds ids only, no tenant data: the
-- builder claims entries with no tenant set, a tenant's calls add theirs.
CREATE TABLE segmentation.build_queue (
    tenant_id    uuid        NOT NULL,
    segment_id   uuid        NOT NULL,
    -- One more for every request, so a build finishing removes the entry
    -- only if no request came while it ran.
    generation   bigint      NOT NULL DEFAULT 1,
    request_time timestamptz NOT NULL,
    -- A builder holds the entry until then; a crashed builder's lease runs out.
    lease_until  timestamptz,
    PRIMARY KEY (tenant_id, segment_id)
);
ALTER TABLE segmentation.build_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.build_queue FORCE ROW LEVEL SECURITY;
CREATE POLICY builder ON segmentation.build_queue
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
CREATE POLICY tenant_isolation ON segmentation.build_queue
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.build_queue TO rapport_segmentation;

-- Segments: the tenant's own; and, with app.purger on and no tenant set,
-- archived segments (read only) so the purger finds those past their purge
-- time, then deletes each as its tenant. Neither policy errors when the
-- other's setting is missing.
ALTER TABLE segmentation.segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.segments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON segmentation.segments
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY purger ON segmentation.segments FOR SELECT
    USING (current_setting('app.purger', true) = 'on' AND purge_time IS NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.segments TO rapport_segmentation;

CREATE TABLE segmentation.feed_cursors (
    consumer text   PRIMARY KEY,
    position bigint NOT NULL
);
CREATE TABLE segmentation.dead_letters (
    consumer  text        NOT NULL,
    position  bigint      NOT NULL,
    envelope  bytea       NOT NULL,
    error     text        NOT NULL,
    attempts  integer     NOT NULL,
    dead_time timestamptz NOT NULL,
    PRIMARY KEY (consumer, position)
);
ALTER TABLE segmentation.feed_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.feed_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON segmentation.feed_cursors
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
ALTER TABLE segmentation.dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON segmentation.dead_letters
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
GRANT SELECT, INSERT, UPDATE ON segmentation.feed_cursors TO rapport_segmentation;
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.dead_letters TO rapport_segmentation;
