//! Losses, threshold operators, U-Net and training on burn.
pub mod record;
pub mod rng;
pub mod unet;
