//! The feeds segmentation follows, one module per producer; their SQL is
//! in `store::projection`.

pub mod contacts;
pub mod feedback;
