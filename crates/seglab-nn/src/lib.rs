//! Losses, threshold operators, U-Net and training on burn.

pub mod loss;
pub mod threshold;

pub use loss::{
    check_inputs, InputError, LossError, LossKind, LossParams, LossSpec, LossTerm, Reduction,
};
pub use threshold::{Annealing, TemperatureSchedule, ThresholdError, ThresholdMode};
