//! Segmentation metrics and mask IO. No deep-learning dependency.
pub mod confusion;
pub mod io;
pub mod lesion;
pub mod mask;

pub use confusion::Confusion;
pub use mask::{binarize, Mask, ProbMap};
pub mod distance;
pub use distance::{distance_metrics, DistanceMetrics, DistanceOutcome, DistanceSettings};
