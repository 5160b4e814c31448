//! Segmentation metrics and mask IO. No deep-learning dependency.
pub mod brats;
pub mod comparison;
pub mod confusion;
pub mod crop;
pub mod evaluate;
pub mod folders;
#[doc(hidden)]
pub mod fuzzing;
pub mod instances;
pub mod io;
pub mod labels;
pub mod lesion;
pub mod mask;
mod overlap;
pub mod panic;
pub mod pooled;
pub mod rng;
pub mod stats;
pub mod summary;

pub use confusion::Confusion;
pub use crop::UnionCrop;
pub use evaluate::{
    evaluate_masks, evaluate_probs, CaseResult, EmptyPolicy, EvalSettings, Metrics,
};
pub use mask::{binarize, Mask, ProbMap};
pub mod distance;
pub mod edt;
mod surface;
mod surfel_table;
pub use distance::{distance_metrics, DistanceMetrics, DistanceOutcome, DistanceSettings};
