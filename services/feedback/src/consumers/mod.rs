//! The feeds feedback follows, one module per producer.

pub mod contacts;
