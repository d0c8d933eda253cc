//! Pure contact logic, no I/O: validation, batch upserts, merging, and
//! the history a change leaves.

pub mod contact;
pub mod event;
pub mod history;
pub mod merge;
pub mod rules;
pub mod upsert;
