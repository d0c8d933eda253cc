-- The trace context of the call that wrote each event (a W3C traceparent),
-- so the work a consumer does because of the event links to that call.
ALTER TABLE feedback.outbox ADD COLUMN traceparent text;
