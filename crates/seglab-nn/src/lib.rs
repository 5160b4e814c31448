//! Losses, threshold operators, U-Net and training on burn.
pub mod data;
pub mod error;
pub mod loss_glue;
pub mod record;
pub mod rng;
pub mod synth;
pub mod train;
mod tumors2d_files;
pub mod unet;
