//! What the trainer optimises: a loss (`loss::LossSpec`) on the network's logits, after a threshold operator
//! (`threshold::ThresholdMode`) on the probabilities, optionally with an annealed soft-threshold temperature.
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::loss::{LossError, LossKind, LossParams, LossSpec, Reduction};
use crate::threshold::{
    Annealing, TemperatureSchedule, ThresholdError, ThresholdMode, DEFAULT_POWER_K,
    DEFAULT_TEMPERATURE, DEFAULT_THRESHOLD,
};

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
    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        self.spec
            .validate()
            .map_err(|e| Error::config("loss.spec", e.to_string()))?;
        self.threshold
            .validate()
            .map_err(|e| Error::config("loss.threshold", e.to_string()))?;
        if let Some(s) = &self.temperature_schedule {
            s.validate()
                .map_err(|e| Error::config("loss.temperature_schedule", e.to_string()))?;
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

/// A loss as a user chooses it (`train`'s and `loss`'s flags, `compare`'s variants): the name (one loss or a sum
/// `A+B`) and only the settings given; the rest take each loss's default. [`LossChoice::spec`] is the one place a
/// choice becomes the trainer's [`LossSpec`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossChoice {
    pub name: String,
    pub params: LossParams,
    /// One weight per term of a sum; `None`: all 1.
    pub weights: Option<Vec<f64>>,
    /// `None`: the caller's default (the stored config's, or `batch`).
    pub reduction: Option<Reduction>,
}

impl LossChoice {
    /// The settings a config or variant may give, by key.
    pub const KEYS: [&'static str; 7] = [
        "alpha",
        "beta",
        "gamma",
        "smooth",
        "eps",
        "weights",
        "reduction",
    ];

    pub fn named(name: &str) -> Self {
        LossChoice {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// The loss spec, validated; `from_logits` as the caller's predictions are, `default_reduction` when the choice
    /// gives none.
    pub fn spec(
        &self,
        from_logits: bool,
        default_reduction: Reduction,
    ) -> Result<LossSpec, LossError> {
        LossSpec::parse(
            &self.name,
            self.weights.as_deref().unwrap_or(&[]),
            &self.params,
            from_logits,
            self.reduction.unwrap_or(default_reduction),
        )
    }
}

/// A threshold mode as a user chooses it, with only the settings given (defaults: threshold 0.5, temperature 0.1,
/// power k 3). `temperature_end` anneals the soft mode's temperature from `temperature` over the run; the trainer's
/// flags may give it without a mode (the schedule is a soft threshold). [`ThresholdChoice::mode`] and
/// [`ThresholdChoice::schedule`] are the one place a choice becomes operators.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ThresholdChoice {
    pub mode: Option<String>,
    pub threshold: Option<f64>,
    pub temperature: Option<f64>,
    pub k: Option<f64>,
    pub temperature_end: Option<f64>,
    pub annealing: Option<Annealing>,
}

impl ThresholdChoice {
    /// The settings a config or variant may give, by key.
    pub const KEYS: [&'static str; 5] = [
        "threshold",
        "temperature",
        "k",
        "temperature_end",
        "annealing",
    ];

    fn t(&self) -> f64 {
        self.threshold.unwrap_or(DEFAULT_THRESHOLD)
    }

    fn temperature(&self) -> f64 {
        self.temperature.unwrap_or(DEFAULT_TEMPERATURE)
    }

    /// The chosen mode with its parameters, validated; `None` when no mode was given.
    pub fn mode(&self) -> Result<Option<ThresholdMode>, ThresholdError> {
        self.mode
            .as_deref()
            .map(|m| {
                ThresholdMode::from_parts(
                    m,
                    self.t(),
                    self.temperature(),
                    self.k.unwrap_or(DEFAULT_POWER_K),
                )
            })
            .transpose()
    }

    /// Whether the prediction is thresholded (in any form) before the loss.
    pub fn thresholds_before_loss(&self) -> bool {
        self.mode.as_deref().is_some_and(|m| m != "none")
    }

    /// The annealed soft threshold when `temperature_end` is given; an error when a mode other than soft is.
    pub fn schedule(&self) -> Result<Option<TemperatureSchedule>, ThresholdError> {
        let Some(end) = self.temperature_end else {
            return Ok(None);
        };
        if let Some(mode) = self.mode()? {
            if !matches!(mode, ThresholdMode::Soft { .. }) {
                return Err(ThresholdError::ScheduleNeedsSoft);
            }
        }
        TemperatureSchedule::new(
            self.t(),
            self.temperature(),
            end,
            self.annealing.unwrap_or_default(),
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn deep_loss_weighs_scales_and_downsamples_by_majority() {
        let device = Device::flex();
        // No smoothing, so that a loss does not depend on the number of pixels.
        let cfg = LossConfig {
            spec: LossSpec::single(LossKind::Tversky {
                alpha: 0.3,
                beta: 0.7,
                smooth: 0.0,
            }),
            ..Default::default()
        };
        // A uniform prediction and an all-lesion target: every scale has the same loss, so the normalised weighted
        // sum equals it.
        let full = Tensor::<4>::ones([1, 1, 8, 8], &device);
        let z = |side: usize, v: f32| Tensor::<4>::ones([1, 1, side, side], &device).mul_scalar(v);
        let plain = value(cfg.train_loss(z(8, 0.3), full.clone(), 0.0));
        let deep = value(cfg.train_loss_deep(z(8, 0.3), vec![z(4, 0.3), z(2, 0.3)], full, 0.0));
        assert!((plain - deep).abs() < 1e-6, "{plain} vs {deep}");
        // A target with one lesion pixel per 2x2 block: the majority vote gives an empty 4x4 target, so an
        // auxiliary output predicting lesion everywhere is all false positives there.
        let mut t = vec![0f32; 64];
        for y in (0..8).step_by(2) {
            for x in (0..8).step_by(2) {
                t[y * 8 + x] = 1.0;
            }
        }
        let t = Tensor::<4>::from_data(TensorData::new(t, [1, 1, 8, 8]), &device);
        let on = |side: usize| z(side, 10.0);
        let with_aux = value(cfg.train_loss_deep(on(8), vec![on(4)], t.clone(), 0.0));
        let main = value(cfg.train_loss(on(8), t.clone(), 0.0));
        let empty = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        let aux = value(cfg.train_loss(on(4), empty, 0.0));
        assert!(aux > 0.9, "all false positives: {aux}");
        let expected = (main + 0.5 * aux) / 1.5;
        assert!(
            (with_aux - expected).abs() < 1e-6,
            "{with_aux} vs {expected}"
        );
    }
}
