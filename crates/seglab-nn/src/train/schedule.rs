//! The learning-rate schedule: linear warm-up, then cosine, poly or constant.

use serde::{Deserialize, Serialize};

use super::TrainConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Cosine,
    /// `(1 - t)^0.9`, the nnU-Net schedule.
    Poly,
    Constant,
}

impl TrainConfig {
    /// Learning rate at optimizer step `step` (0-based) of a schedule of `total` steps; past `total` it stays at the
    /// final value.
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize, total: usize) -> f64 {
        let warm = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = if total > warm {
            ((step - warm) as f64 / (total - warm) as f64).min(1.0)
        } else {
            1.0
        };
        let min = self.lr * self.min_lr_ratio;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Poly => (self.lr * (1.0 - t).powf(0.9)).max(min),
        }
    }
}
