-- Lead scoring models. Scores are worked out from the projections when
-- read, so only the models are stored: their rules as a
-- rapport.segmentation.v1.ScoringModel holding only `rules`.
CREATE TABLE segmentation.scoring_models (
    tenant_id         uuid        NOT NULL,
    id                uuid        NOT NULL,
    name              text        NOT NULL,
    description       text        NOT NULL,
    rules             bytea       NOT NULL,
    half_life_seconds bigint      NOT NULL,
    revision          bigint      NOT NULL DEFAULT 1,
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX scoring_models_name_idx ON segmentation.scoring_models (tenant_id, name, id);
ALTER TABLE segmentation.scoring_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE segmentation.scoring_models FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON segmentation.scoring_models
    USING (tenant_id = segmentation.current_tenant())
    WITH CHECK (tenant_id = segmentation.current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.scoring_models TO rapport_segmentation;
