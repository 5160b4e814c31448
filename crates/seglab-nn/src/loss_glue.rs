//! The trainer's view of the loss: which loss, which threshold mode, evaluated on logits.
//!
//! INTERIM: soft Tversky with `none`/`hard` threshold modes only, until the `losses` branch (loss.rs,
//! threshold.rs) is merged; then this module only maps `LossConfig` onto those specs.
use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub name: String,
    pub alpha: f64,
    pub beta: f64,
    pub threshold_mode: String,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            name: "tversky".into(),
            alpha: 0.3,
            beta: 0.7,
            threshold_mode: "none".into(),
        }
    }
}

impl LossConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.name != "tversky" {
            return Err(format!("unknown loss {}", self.name));
        }
        if !["none", "hard"].contains(&self.threshold_mode.as_str()) {
            return Err(format!("unknown threshold mode {}", self.threshold_mode));
        }
        Ok(())
    }
}

fn tversky(p: Tensor<4>, t: Tensor<4>, alpha: f64, beta: f64) -> Tensor<1> {
    let tp = (p.clone() * t.clone()).sum();
    let fp = (p.clone() * t.clone().neg().add_scalar(1.0)).sum();
    let fn_ = (p.neg().add_scalar(1.0) * t).sum();
    let den = tp.clone() + fp.mul_scalar(alpha) + fn_.mul_scalar(beta);
    (tp.add_scalar(1.0))
        .div(den.add_scalar(1.0))
        .neg()
        .add_scalar(1.0)
}

fn loss(cfg: &LossConfig, logits: Tensor<4>, t: Tensor<4>, soft: bool) -> Tensor<1> {
    let mut p = sigmoid(logits);
    if !soft && cfg.threshold_mode == "hard" {
        p = p.greater_equal_elem(0.5).float();
    }
    tversky(p, t, cfg.alpha, cfg.beta)
}

/// Training loss (with the threshold mode); `progress` in [0, 1] drives temperature schedules.
pub fn train_loss(cfg: &LossConfig, logits: Tensor<4>, t: Tensor<4>, _progress: f64) -> Tensor<1> {
    loss(cfg, logits, t, false)
}

/// Loss value on validation data; `soft` drops the threshold mode.
pub fn eval_loss(
    cfg: &LossConfig,
    logits: Tensor<4>,
    t: Tensor<4>,
    _progress: f64,
    soft: bool,
) -> f64 {
    loss(cfg, logits, t, soft).into_scalar::<f32>() as f64
}
