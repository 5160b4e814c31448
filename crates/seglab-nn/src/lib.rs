//! Losses, threshold operators, U-Net and training on burn.
pub mod allocator;
pub mod data;
pub mod device;
pub mod error;
pub mod fuzzing;
pub mod grad_stats;
pub mod kernels;
pub mod loss;
pub mod names;
pub mod objective;
pub mod record;
pub mod rng;
pub mod synth;
pub mod threshold;
pub mod train;
mod tumors2d_files;
pub mod unet;

pub use loss::{
    check_inputs, InputError, LossError, LossKind, LossParams, LossSpec, LossTerm, Reduction,
};
pub use threshold::{Annealing, TemperatureSchedule, ThresholdError, ThresholdMode};
