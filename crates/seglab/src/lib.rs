//! The `seglab` library side of the binary crate: the experiment model, its statistics and the report writer, shared by
//! `seglab compare` and the tests.
pub mod experiment;
pub mod report;
pub mod stats;
