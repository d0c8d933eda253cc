//! Pure rules of segmentation: the rule tree and its checks, explanations,
//! estimates, and the references between segments.

pub mod estimate;
pub mod explain;
pub mod projection;
pub mod references;
pub mod rule;
pub mod segment;
pub mod validate;
