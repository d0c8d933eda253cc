-- GetContact in one round trip. Called outside any explicit transaction,
-- it sets the tenant for the statement's own implicit transaction only,
-- then reads as the caller, so row-level security applies as everywhere
-- else. (Inside a transaction it would set that transaction's tenant; the
-- service never calls it there.)
CREATE FUNCTION contacts.contact_by_id(tenant uuid, contact_id uuid)
    RETURNS SETOF contacts.contacts
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', tenant::text, true);
    RETURN QUERY SELECT * FROM contacts.contacts c WHERE c.id = contact_id;
END
$$;

GRANT EXECUTE ON FUNCTION contacts.contact_by_id(uuid, uuid) TO rapport_contacts;
