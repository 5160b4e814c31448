pub mod compare;
pub mod evaluate;
pub mod gradcheck;
pub mod loss;
pub mod predict;
pub mod synth;
pub mod train;
