-- How many responses each survey's anonymous link began in the current
-- clock hour, against the survey's `anonymous_link_hourly_limit` (kept in
-- its content). Only the current hour's row is kept: starting an hour
-- deletes the survey's older rows. The gateway limits each link's calls per
-- second too; this bounds what a patient script can add to a survey.
CREATE TABLE feedback.anonymous_link_hours (
    tenant_id uuid        NOT NULL,
    survey_id uuid        NOT NULL,
    hour      timestamptz NOT NULL,
    responses integer     NOT NULL,
    PRIMARY KEY (tenant_id, survey_id, hour)
);
ALTER TABLE feedback.anonymous_link_hours ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.anonymous_link_hours FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feedback.anonymous_link_hours
    USING (tenant_id = feedback.current_tenant())
    WITH CHECK (tenant_id = feedback.current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON feedback.anonymous_link_hours TO rapport_feedback;
