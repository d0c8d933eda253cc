//! The event types of the feedback change feed; payloads are the messages
//! of `rapport/feedback/v1/events.proto`.

pub const RESPONSE_SUBMITTED: &str = "feedback.response_submitted";
pub const INVITATION_SENT: &str = "feedback.invitation_sent";
pub const SURVEY_CLOSED: &str = "feedback.survey_closed";
