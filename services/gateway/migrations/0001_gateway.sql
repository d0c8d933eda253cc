-- The gateway schema: tenants and their API keys. The gateway logs in as
-- rapport_gateway, which owns nothing and does not bypass row-level
-- security. Its transactions see rows in one of two modes:
--   * authenticating a key: `app.key_prefix` names the presented key, which
--     alone is visible, then `app.tenant_id` its tenant;
--   * operator (admin calls, after the operator key was checked):
--     `app.operator` is 'on'.
-- Without either setting nothing is visible.

DO $$
BEGIN
    CREATE ROLE rapport_gateway LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA gateway TO rapport_gateway;

CREATE TABLE gateway.tenants (
    id                    uuid        NOT NULL PRIMARY KEY,
    display_name          text        NOT NULL,
    state                 smallint    NOT NULL,
    rate_limit_per_second integer     NOT NULL DEFAULT 0,
    rate_limit_burst      integer     NOT NULL DEFAULT 0,
    create_time           timestamptz NOT NULL,
    update_time           timestamptz NOT NULL
);

CREATE TABLE gateway.api_keys (
    tenant_id    uuid        NOT NULL REFERENCES gateway.tenants (id),
    id           uuid        NOT NULL,
    prefix       text        NOT NULL,
    secret_hash  bytea       NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    scopes       text[]      NOT NULL,
    expire_time  timestamptz,
    revoke_time  timestamptz,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_prefix_key ON gateway.api_keys (prefix);
CREATE INDEX api_keys_id_idx ON gateway.api_keys (id);

ALTER TABLE gateway.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON gateway.tenants
    USING (current_setting('app.operator', true) = 'on'
           OR id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (current_setting('app.operator', true) = 'on');

ALTER TABLE gateway.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY access ON gateway.api_keys
    USING (current_setting('app.operator', true) = 'on'
           OR prefix = current_setting('app.key_prefix', true))
    WITH CHECK (current_setting('app.operator', true) = 'on');

GRANT SELECT, INSERT, UPDATE ON gateway.tenants, gateway.api_keys TO rapport_gateway;
