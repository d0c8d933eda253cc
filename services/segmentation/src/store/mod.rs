//! sqlx for the `segmentation` schema, one module per resource; the feed
//! consumers' writes are in `projection`.

pub mod build;
pub mod changes;
pub mod compile;
pub mod crossings;
pub mod cursor;
pub mod evaluate;
pub mod facts;
pub mod membership;
pub mod projection;
pub mod scoring;
pub mod segment;
pub mod sweep;
