-- Running counts behind survey summaries, so that a summary reads a few
-- rows per day instead of every answer. Each completed response adds one
-- to its day's rows: `#completed`, and per answered question either its
-- score, or -1 for answered without a score, plus one row per picked
-- choice. CreateInvitations adds to `#invited`, and completing an
-- invitation to `#invited_completed`, on the day the invitation was made.
-- A writer adds to one of eight slots picked at random, so concurrent
-- answers rarely wait on the same row; readers sum the slots.
CREATE TABLE feedback.survey_counts (
    tenant_id uuid     NOT NULL,
    survey_id uuid     NOT NULL,
    day       date     NOT NULL,
    metric    text     NOT NULL,
    score     smallint NOT NULL DEFAULT -1,
    choice_id text     NOT NULL DEFAULT '',
    slot      smallint NOT NULL,
    count     bigint   NOT NULL,
    PRIMARY KEY (tenant_id, survey_id, day, metric, score, choice_id, slot)
);

-- The counts of what was already stored, across tenants: the owner running
-- this migration reads past row-level security for this transaction only.
ALTER TABLE feedback.responses NO FORCE ROW LEVEL SECURITY;
ALTER TABLE feedback.answers NO FORCE ROW LEVEL SECURITY;
ALTER TABLE feedback.invitations NO FORCE ROW LEVEL SECURITY;
INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count)
SELECT tenant_id, survey_id, (complete_time AT TIME ZONE 'UTC')::date, '#completed', -1, '', 0, count(*)
FROM feedback.responses WHERE status = 2
GROUP BY 1, 2, 3;
INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count)
SELECT tenant_id, survey_id, (complete_time AT TIME ZONE 'UTC')::date, question_id, coalesce(score, -1), '', 0, count(*)
FROM feedback.answers WHERE complete_time IS NOT NULL
GROUP BY 1, 2, 3, 4, 5;
INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count)
SELECT a.tenant_id, a.survey_id, (a.complete_time AT TIME ZONE 'UTC')::date, a.question_id, -1, c.choice_id, 0, count(*)
FROM feedback.answers AS a, unnest(a.choice_ids) AS c(choice_id)
WHERE a.complete_time IS NOT NULL
GROUP BY 1, 2, 3, 4, 6;
INSERT INTO feedback.survey_counts (tenant_id, survey_id, day, metric, score, choice_id, slot, count)
SELECT tenant_id, survey_id, (create_time AT TIME ZONE 'UTC')::date, m.metric, -1, '', 0, count(*)
FROM feedback.invitations,
     LATERAL (VALUES ('#invited', true), ('#invited_completed', complete_time IS NOT NULL)) AS m(metric, counted)
WHERE NOT anonymous AND m.counted
GROUP BY 1, 2, 3, 4;

ALTER TABLE feedback.responses FORCE ROW LEVEL SECURITY;
ALTER TABLE feedback.answers FORCE ROW LEVEL SECURITY;
ALTER TABLE feedback.invitations FORCE ROW LEVEL SECURITY;

ALTER TABLE feedback.survey_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE feedback.survey_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feedback.survey_counts
    USING (tenant_id = feedback.current_tenant())
    WITH CHECK (tenant_id = feedback.current_tenant());
GRANT SELECT, INSERT, UPDATE ON feedback.survey_counts TO rapport_feedback;

-- The summary's edges (part of a day) scan answers and responses by time;
-- the old whole-survey scan index goes.
DROP INDEX feedback.answers_summary_idx;
CREATE INDEX answers_complete_time_idx ON feedback.answers (tenant_id, survey_id, complete_time)
    WHERE complete_time IS NOT NULL;
CREATE INDEX responses_partial_idx ON feedback.responses (tenant_id, survey_id, start_time)
    WHERE status = 1;
CREATE INDEX responses_complete_time_idx ON feedback.responses (tenant_id, survey_id, complete_time)
    WHERE status = 2;

-- Two corrections to comments of 0001 (which stays as applied):
-- invitations.token_hash is the only copy of a token in that table, but the
-- CreateInvitations reply kept for retries in idempotency_keys holds the
-- tokens for 24 hours or until a contact it names is erased; and
-- answers.ordinal is an answer's place among its response's answers, which
-- follow the survey's question order.
