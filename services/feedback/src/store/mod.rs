//! sqlx queries on the `feedback` schema only. Every function runs inside
//! the caller's transaction, which has set the tenant (or, for a
//! respondent's token lookup, `app.token_hash`).

pub mod anonymous_link;
pub mod contact_changes;
pub mod contacts;
pub mod counts;
pub mod invitation;
pub mod response;
pub mod settings;
pub mod survey;
