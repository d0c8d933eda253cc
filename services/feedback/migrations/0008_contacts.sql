-- The tenant's contacts as the contacts feed tells them: created (gone =
-- false), then deleted, merged into another or erased (gone = true).
-- CreateInvitations skips ids that are gone, and asks the contacts service
-- about ids not here yet.
CREATE TABLE feedback.contacts (
    tenant_id  uuid    NOT NULL,
    contact_id uuid    NOT NULL,
    gone       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, contact_id)
);
ALTER TABLE feedback.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feedback.contacts
    USING (tenant_id = feedback.current_tenant())
    WITH CHECK (tenant_id = feedback.current_tenant());
-- A consumer whose cursor fell behind the retained feed forgets the
-- projection before loading the snapshot again: with app.projection_reset
-- on (and no tenant), it may delete every tenant's rows. The tenant
-- function then matches no tenant instead of failing for want of one.
CREATE OR REPLACE FUNCTION feedback.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE WHEN current_setting('app.feed', true) = 'on'
                      OR current_setting('app.projection_reset', true) = 'on' THEN NULL
                    ELSE current_setting('app.tenant_id')::uuid END
    $$;
CREATE POLICY projection_reset ON feedback.contacts FOR DELETE
    USING (current_setting('app.projection_reset', true) = 'on');
GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.contacts TO rapport_feedback;

-- The contacts consumer now also loads the live contacts from the
-- snapshot, under a new name (feedback.contacts_v2) so that it starts
-- without a cursor. The old cursor is left to replicas still running the
-- previous release during a rollout; nothing reads it afterwards.
