pub mod compare;
pub mod evaluate;
pub mod predict;
pub mod synth;
pub mod train;
pub mod gradcheck;
pub mod loss;
