-- The feedback schema. Every table leads its keys with tenant_id and has a
-- row-level-security policy; the service logs in as rapport_feedback, which
-- owns nothing and does not bypass RLS.

DO $$
BEGIN
    CREATE ROLE rapport_feedback LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION
    -- Another database of the same cluster created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA feedback TO rapport_feedback;

-- Errors (never matches every row) when the transaction did not set a tenant.
CREATE FUNCTION feedback.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT current_setting('app.tenant_id')::uuid $$;

-- The tenant's settings; a missing row means the defaults.
CREATE TABLE feedback.settings (
    tenant_id    uuid        NOT NULL PRIMARY KEY,
    fatigue_days integer     NOT NULL DEFAULT 0,
    update_time  timestamptz NOT NULL
);

CREATE TABLE feedback.surveys (
    tenant_id            uuid        NOT NULL,
    id                   uuid        NOT NULL,
    name                 text        NOT NULL,
    touchpoint           text        NOT NULL,
    channel              smallint    NOT NULL,
    status               smallint    NOT NULL,
    -- Languages, titles and questions: a rapport.feedback.v1.Survey holding
    -- only those fields, so the questions keep their proto shape exactly.
    content              bytea       NOT NULL,
    fatigue_days         integer     NOT NULL DEFAULT 0,
    invitation_ttl_days  integer     NOT NULL DEFAULT 0,
    -- The anonymous link's token while it is enabled, and its SHA-256 (hex)
    -- by which SubmitResponse finds the survey before it knows the tenant.
    anonymous_link_token text,
    anonymous_token_hash text,
    revision             bigint      NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX surveys_anonymous_token_idx ON feedback.surveys (anonymous_token_hash)
    WHERE anonymous_token_hash IS NOT NULL;

CREATE TABLE feedback.invitations (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    survey_id     uuid        NOT NULL,
    -- NULL for the invitations an anonymous link hands out, and once the
    -- contact is erased.
    contact_id    uuid,
    anonymous     boolean     NOT NULL,
    channel       smallint    NOT NULL,
    -- SHA-256 (hex) of the token; the token itself is never stored.
    token_hash    text        NOT NULL,
    create_time   timestamptz NOT NULL,
    expire_time   timestamptz NOT NULL,
    complete_time timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, survey_id) REFERENCES feedback.surveys (tenant_id, id)
);
-- Not unique: tokens carry 256 random bits, and a unique index would not
-- lead with tenant_id.
CREATE INDEX invitations_token_idx ON feedback.invitations (token_hash);
CREATE INDEX invitations_contact_idx ON feedback.invitations (tenant_id, contact_id, create_time DESC)
    WHERE contact_id IS NOT NULL;
CREATE INDEX invitations_survey_idx ON feedback.invitations (tenant_id, survey_id, create_time)
    WHERE NOT anonymous;

CREATE TABLE feedback.responses (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    survey_id     uuid        NOT NULL,
    invitation_id uuid        NOT NULL,
    contact_id    uuid,
    anonymous     boolean     NOT NULL,
    channel       smallint    NOT NULL,
    touchpoint    text        NOT NULL,
    language      text        NOT NULL,
    status        smallint    NOT NULL,
    -- The answer to the survey's first scored question.
    score         smallint,
    has_comment   boolean     NOT NULL DEFAULT false,
    tags          text[]      NOT NULL DEFAULT '{}',
    start_time    timestamptz NOT NULL,
    update_time   timestamptz NOT NULL,
    complete_time timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, invitation_id),
    FOREIGN KEY (tenant_id, survey_id) REFERENCES feedback.surveys (tenant_id, id),
    FOREIGN KEY (tenant_id, invitation_id) REFERENCES feedback.invitations (tenant_id, id)
);
CREATE INDEX responses_survey_idx ON feedback.responses (tenant_id, survey_id, id);
CREATE INDEX responses_contact_idx ON feedback.responses (tenant_id, contact_id, id)
    WHERE contact_id IS NOT NULL;
CREATE INDEX responses_update_time_idx ON feedback.responses (tenant_id, update_time);

-- One row per answered question. complete_time repeats the response's, so
-- that a survey summary reads this table's index alone.
CREATE TABLE feedback.answers (
    tenant_id     uuid        NOT NULL,
    response_id   uuid        NOT NULL,
    question_id   text        NOT NULL,
    -- The question's place in the survey, to list answers in its order.
    ordinal       smallint    NOT NULL,
    survey_id     uuid        NOT NULL,
    score         smallint,
    choice_ids    text[],
    -- Free text; '' once its author was erased.
    text          text,
    complete_time timestamptz,
    PRIMARY KEY (tenant_id, response_id, question_id),
    FOREIGN KEY (tenant_id, response_id) REFERENCES feedback.responses (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX answers_summary_idx ON feedback.answers (tenant_id, survey_id, question_id, score)
    INCLUDE (complete_time);

-- Contacts erased at the contacts service: never invited again.
CREATE TABLE feedback.erased_contacts (
    tenant_id  uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    erase_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Responses of calls made with a request_id (see rapport_core::idempotency).
CREATE TABLE feedback.idempotency_keys (
    tenant_id    uuid        NOT NULL,
    operation    text        NOT NULL,
    request_id   text        NOT NULL,
    request_hash bytea       NOT NULL,
    response     bytea       NOT NULL,
    subject_ids  uuid[]      NOT NULL DEFAULT '{}',
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, operation, request_id)
);
CREATE INDEX idempotency_keys_create_time_idx ON feedback.idempotency_keys (tenant_id, create_time);

-- Where each change-feed consumer of this service has got to.
CREATE TABLE feedback.feed_cursors (
    consumer text   PRIMARY KEY,
    position bigint NOT NULL
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['settings', 'responses', 'answers', 'erased_contacts', 'idempotency_keys']
    LOOP
        EXECUTE format('ALTER TABLE feedback.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE feedback.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON feedback.%I
                            USING (tenant_id = feedback.current_tenant())
                            WITH CHECK (tenant_id = feedback.current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.%I TO rapport_feedback', t);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION feedback.current_tenant() TO rapport_feedback;

-- Surveys and invitations are also found by a respondent's token before the
-- tenant is known: SubmitResponse sets app.token_hash, which reveals (for
-- reading only) the one row holding that token. Neither policy errors when
-- the other's setting is missing.
ALTER TABLE feedback.surveys ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.surveys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feedback.surveys
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY token_lookup ON feedback.surveys FOR SELECT
    USING (anonymous_token_hash = NULLIF(current_setting('app.token_hash', true), ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.surveys TO rapport_feedback;

ALTER TABLE feedback.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feedback.invitations
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY token_lookup ON feedback.invitations FOR SELECT
    USING (token_hash = NULLIF(current_setting('app.token_hash', true), ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.invitations TO rapport_feedback;

-- Not tenant data: reachable only while no tenant is set, as the consumer
-- does when it moves its cursor.
ALTER TABLE feedback.feed_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.feed_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY no_tenant ON feedback.feed_cursors
    USING (coalesce(current_setting('app.tenant_id', true), '') = '');
GRANT SELECT, INSERT, UPDATE ON feedback.feed_cursors TO rapport_feedback;
