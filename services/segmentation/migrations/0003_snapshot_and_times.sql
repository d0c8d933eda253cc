-- The feed's snapshot reads memberships with app.feed on and no tenant.
-- The tenant function errors without a tenant (never "all rows"), except
-- in feed mode, where it matches no tenant and only the feed policy admits
-- rows, for reading.
CREATE OR REPLACE FUNCTION segmentation.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN current_setting('app.feed', true) = 'on' THEN NULL
                    ELSE current_setting('app.tenant_id')::uuid END
    $$;

-- A moment in an attribute: the grammar the per-contact evaluator reads
-- too (domain/evaluate.rs, attribute_time), so both evaluators agree: a
-- date, or a date and time with optional fraction and offset (Z or
-- +hh:mm); no offset is UTC.
CREATE OR REPLACE FUNCTION segmentation.attribute_time(value jsonb) RETURNS timestamptz
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET TimeZone = 'UTC'
    AS $$
BEGIN
    IF jsonb_typeof(value) <> 'string' OR value #>> '{}' !~
        '^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})?)?$' THEN
        RETURN NULL;
    END IF;
    RETURN (value #>> '{}')::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
