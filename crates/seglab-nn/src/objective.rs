//! What the trainer optimises: a loss (`loss::LossSpec`) on the network's logits, after a threshold operator
//! (`threshold::ThresholdMode`) on the probabilities, optionally with an annealed soft-threshold temperature.
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::loss::{LossKind, LossSpec};
use crate::threshold::{TemperatureSchedule, ThresholdMode};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Loss terms and reduction; the trainer always feeds logits (`from_logits` is forced on).
    pub spec: LossSpec,
    /// Applied to the probabilities before the loss during training (and for `val_loss`).
    pub threshold: ThresholdMode,
    /// When set, training uses a soft threshold whose temperature follows this schedule over the run's steps
    /// (it replaces `threshold`).
    pub temperature_schedule: Option<TemperatureSchedule>,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            spec: LossSpec::single(LossKind::Tversky {
                alpha: 0.3,
                beta: 0.7,
                smooth: 1.0,
            })
            .with_from_logits(true),
            threshold: ThresholdMode::None,
            temperature_schedule: None,
        }
    }
}

impl LossConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.spec.validate().map_err(|e| format!("loss: {e}"))?;
        self.threshold
            .validate()
            .map_err(|e| format!("threshold mode: {e}"))?;
        if let Some(s) = &self.temperature_schedule {
            s.validate()
                .map_err(|e| format!("temperature schedule: {e}"))?;
        }
        Ok(())
    }

    /// The threshold mode in force at training progress `progress` in [0, 1].
    pub fn mode_at(&self, progress: f64) -> ThresholdMode {
        match &self.temperature_schedule {
            Some(s) => s.mode_at(progress),
            None => self.threshold,
        }
    }

    fn spec(&self) -> LossSpec {
        self.spec.clone().with_from_logits(true)
    }

    /// Training loss on logits, with the threshold mode at `progress`.
    pub fn train_loss(&self, logits: Tensor<4>, target: Tensor<4>, progress: f64) -> Tensor<1> {
        self.spec().loss(logits, target, &self.mode_at(progress))
    }

    /// Training loss with deep supervision: the loss of the logits and of each auxiliary output at 1/2^k resolution
    /// against the target downsampled by majority vote over 2^k x 2^k blocks (a binary target, so every loss
    /// applies), weighted 1/2^k and normalised to sum 1, as nnU-Net weighs its outputs. Without `aux` it is
    /// [`LossConfig::train_loss`].
    pub fn train_loss_deep(
        &self,
        logits: Tensor<4>,
        aux: Vec<Tensor<4>>,
        target: Tensor<4>,
        progress: f64,
    ) -> Tensor<1> {
        if aux.is_empty() {
            return self.train_loss(logits, target, progress);
        }
        let weights: Vec<f64> = (0..=aux.len()).map(|k| 0.5f64.powi(k as i32)).collect();
        let total: f64 = weights.iter().sum();
        let mut loss = self
            .train_loss(logits, target.clone(), progress)
            .mul_scalar(weights[0] / total);
        for (k, a) in aux.into_iter().enumerate() {
            let f = 1usize << (k + 1);
            let t = avg_pool2d(target.clone(), AvgPoolOptions::new([f, f]))
                .greater_equal_elem(0.5)
                .float();
            loss = loss
                + self
                    .train_loss(a, t, progress)
                    .mul_scalar(weights[k + 1] / total);
        }
        loss
    }

    /// Loss value on validation logits: with the training threshold mode, or without any (`soft`).
    pub fn eval_loss(
        &self,
        logits: Tensor<4>,
        target: Tensor<4>,
        progress: f64,
        soft: bool,
    ) -> f64 {
        let mode = if soft {
            ThresholdMode::None
        } else {
            self.mode_at(progress)
        };
        self.spec().loss(logits, target, &mode).into_scalar::<f32>() as f64
    }
}
