pub mod evaluate;
pub mod gradcheck;
pub mod loss;
