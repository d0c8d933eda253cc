//! Pure contact logic, no I/O: validation, field masks, merging and the
//! history a change leaves.

pub mod contact;
pub mod event;
pub mod rules;
