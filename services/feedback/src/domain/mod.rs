//! Pure feedback logic: no I/O.

pub mod answer;
pub mod fatigue;
pub mod question;
pub mod score;
pub mod summary;
pub mod survey;
pub mod token;
