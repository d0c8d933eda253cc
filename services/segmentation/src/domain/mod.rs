//! Pure rules of segmentation: the rule tree and its checks, the
//! per-contact evaluator and what a rule reads, lead scores,
//! explanations, estimates, and the references between segments.

pub mod attribute;
pub mod decay;
pub mod estimate;
pub mod evaluate;
pub mod explain;
pub mod projection;
pub mod reads;
pub mod references;
pub mod rule;
pub mod scoring;
pub mod segment;
pub mod validate;
