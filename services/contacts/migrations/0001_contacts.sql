-- The contacts schema. Every table leads its keys with tenant_id and has a
-- row-level-security policy; the service logs in as rapport_contacts, which
-- owns nothing and does not bypass RLS.

DO $$
BEGIN
    CREATE ROLE rapport_contacts LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION
    -- Another database of the same cluster created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA contacts TO rapport_contacts;

-- Errors (never matches every row) when the transaction did not set a tenant.
CREATE FUNCTION contacts.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT current_setting('app.tenant_id')::uuid $$;

CREATE TABLE contacts.contacts (
    tenant_id       uuid        NOT NULL,
    id              uuid        NOT NULL,
    external_id     text,
    email           text,
    phone           text,
    first_name      text        NOT NULL DEFAULT '',
    last_name       text        NOT NULL DEFAULT '',
    locale          text        NOT NULL DEFAULT '',
    time_zone       text        NOT NULL DEFAULT '',
    attributes      jsonb       NOT NULL DEFAULT '{}',
    tags            text[]      NOT NULL DEFAULT '{}',
    lifecycle_stage smallint    NOT NULL DEFAULT 0,
    -- [{"channel": 1, "status": 2, "change_time": "...", "source": "..."}]
    consents        jsonb       NOT NULL DEFAULT '[]',
    revision        bigint      NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX contacts_external_id_key ON contacts.contacts (tenant_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_email_key ON contacts.contacts (tenant_id, lower(email))
    WHERE email IS NOT NULL;
CREATE INDEX contacts_lifecycle_stage_idx ON contacts.contacts (tenant_id, lifecycle_stage, id);
CREATE INDEX contacts_update_time_idx ON contacts.contacts (tenant_id, update_time);
CREATE INDEX contacts_tags_idx ON contacts.contacts USING gin (tags);

CREATE TABLE contacts.lifecycle_history (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    from_stage  smallint    NOT NULL,
    to_stage    smallint    NOT NULL,
    change_time timestamptz NOT NULL,
    source      text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX lifecycle_history_contact_idx ON contacts.lifecycle_history (tenant_id, contact_id, id);

CREATE TABLE contacts.consent_history (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    channel     smallint    NOT NULL,
    from_status smallint    NOT NULL,
    to_status   smallint    NOT NULL,
    change_time timestamptz NOT NULL,
    source      text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX consent_history_contact_idx ON contacts.consent_history (tenant_id, contact_id, id);

-- The omnichannel timeline.
CREATE TABLE contacts.events (
    tenant_id        uuid        NOT NULL,
    id               uuid        NOT NULL,
    contact_id       uuid        NOT NULL,
    client_event_id  text,
    type             text        NOT NULL,
    channel          smallint    NOT NULL,
    occur_time       timestamptz NOT NULL,
    properties       jsonb       NOT NULL DEFAULT '{}',
    revenue_currency text,
    revenue_units    bigint,
    revenue_nanos    integer,
    record_time      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX events_client_event_id_key ON contacts.events (tenant_id, client_event_id)
    WHERE client_event_id IS NOT NULL;
CREATE INDEX events_contact_timeline_idx ON contacts.events (tenant_id, contact_id, occur_time DESC, id DESC);

-- Where the id of a merged-away contact now points.
CREATE TABLE contacts.merges (
    tenant_id   uuid        NOT NULL,
    merged_id   uuid        NOT NULL,
    survivor_id uuid        NOT NULL,
    merge_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, merged_id)
);
CREATE INDEX merges_survivor_idx ON contacts.merges (tenant_id, survivor_id);

-- Ids erased for good; nothing personal is kept.
CREATE TABLE contacts.erasures (
    tenant_id  uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    erase_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Responses of calls made with a request_id (see rapport_core::idempotency).
CREATE TABLE contacts.idempotency_keys (
    tenant_id    uuid        NOT NULL,
    operation    text        NOT NULL,
    request_id   text        NOT NULL,
    request_hash bytea       NOT NULL,
    response     bytea       NOT NULL,
    subject_ids  uuid[]      NOT NULL DEFAULT '{}',
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, operation, request_id)
);
CREATE INDEX idempotency_keys_create_time_idx ON contacts.idempotency_keys (tenant_id, create_time);
CREATE INDEX idempotency_keys_subjects_idx ON contacts.idempotency_keys USING gin (subject_ids);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['contacts', 'lifecycle_history', 'consent_history', 'events',
                             'merges', 'erasures', 'idempotency_keys']
    LOOP
        EXECUTE format('ALTER TABLE contacts.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE contacts.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON contacts.%I
                            USING (tenant_id = contacts.current_tenant())
                            WITH CHECK (tenant_id = contacts.current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON contacts.%I TO rapport_contacts', t);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION contacts.current_tenant() TO rapport_contacts;
