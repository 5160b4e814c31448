//! The `seglab` library side of the binary crate: the experiment model and the report writer, shared by `seglab
//! compare` and the tests. Statistics live in `seglab_metrics::stats` (re-exported here).
pub mod experiment;
pub mod predictions;
pub mod report;
pub use seglab_metrics::stats;
