-- Lead scores as rule conditions. A segment's rule names scoring models
-- (kept here, as segment references are, so a model in use is not
-- deleted and a changed model rebuilds its segments), and for each
-- contact of a segment whose rule has a lead score, the next moment decay
-- alone can change the verdict: the time sweep judges the contacts whose
-- moment has come.
CREATE TABLE segmentation.model_references (
    tenant_id  uuid NOT NULL,
    segment_id uuid NOT NULL,
    model_id   uuid NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, model_id)
);
CREATE INDEX model_references_model_idx ON segmentation.model_references (tenant_id, model_id);

CREATE TABLE segmentation.score_crossings (
    tenant_id  uuid        NOT NULL,
    segment_id uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    cross_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, contact_id)
);
CREATE INDEX score_crossings_due_idx ON segmentation.score_crossings (tenant_id, segment_id, cross_time);
CREATE INDEX score_crossings_contact_idx ON segmentation.score_crossings (tenant_id, contact_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['model_references', 'score_crossings']
    LOOP
        EXECUTE format('ALTER TABLE segmentation.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE segmentation.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON segmentation.%I
                            USING (tenant_id = segmentation.current_tenant())
                            WITH CHECK (tenant_id = segmentation.current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.%I TO rapport_segmentation', t);
    END LOOP;
END $$;
