//! The settings of a run (`TrainConfig`, serialised into the run folder and every checkpoint) and their checks.
use serde::{Deserialize, Serialize};

use super::Schedule;
use crate::data::{self, AugmentConfig, LoadOptions};
use crate::error::{Error, Result};
use crate::objective::LossConfig;
use crate::unet::UNetConfig;

/// Everything that defines a run. Serialised into the run folder and every checkpoint; `--resume` refuses a run
/// whose stored config differs (except `epochs`, which may be raised to continue training).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data spec: `builtin:phantoms`, `builtin:tumors2d` or a folder.
    pub data: String,
    /// Loading and preprocessing (`size`, phantom set size, intensity window).
    pub load: LoadOptions,
    pub model: UNetConfig,
    pub augment: AugmentConfig,
    pub loss: LossConfig,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Linear warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// The schedule ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Clip the global L2 norm of the gradients to this value.
    pub grad_clip: Option<f64>,
    /// Seed of the split, batch order, augmentation and dropout.
    pub seed: u64,
    /// Seed of the initial weights; `None` uses `seed`.
    pub init_seed: Option<u64>,
    pub val_fraction: f64,
    /// Optimizer steps per epoch; `None` is one pass over the training samples.
    pub steps_per_epoch: Option<usize>,
    /// Images per validation forward pass (memory only: results do not depend on it).
    pub val_batch_size: usize,
    /// Validation metrics (not the losses) from mirrored test-time augmentation ([`UNet::probabilities`]).
    pub tta: bool,
    /// Progressive resizing: the run's first epochs train at half the side. A config written before this key
    /// existed reads as off.
    #[serde(default = "LowResPhase::off")]
    pub low_res: LowResPhase,
    /// Stop before `epochs` once the validation Dice has plateaued; `None` trains every epoch. Absent from configs
    /// that do not use it (so older run folders compare equal on resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence: Option<Convergence>,
    /// The length in epochs of the learning-rate schedule, the temperature annealing and the low-resolution phase;
    /// `None` is `epochs`. With a convergence rule, a fixed horizon makes `epochs` a pure budget: a run that
    /// converges within it trains exactly the same epochs whatever the budget (after the horizon the learning rate
    /// stays at its final value and annealed temperatures at their end). Absent from configs that do not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_epochs: Option<usize>,
}

/// The first `round(fraction * epochs)` epochs train on batches at half the side (2x2 means of the augmented
/// images, majority of the masks), each image in `repeats` independently augmented views: a half-side view costs
/// about a quarter of a full-size one, so 8 views cost about what 2 full-size views do. The later epochs train at
/// full size with [`AugmentConfig::repeats`] views. Validation is always at full size. Like the learning-rate
/// schedule, the boundary is a fraction of the run: raising `--epochs` on `--resume` moves it.
///
/// Why: on kvasir_seg_256 the default U-Net with soft Tversky is limited by how many augmented views it sees
/// (BENCHMARKS.md, stops 12-13): 4 full-size views per image instead of 1 raise the 30-epoch validation Dice from
/// about 0.58 to 0.62-0.66 at 3.4x the time; spending the views at half size for the first two thirds of the run
/// reaches more in less time. A convolutional network learns shapes at half scale that carry over once it
/// trains at full size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowResPhase {
    /// Fraction of the epochs at half side, in [0, 1); 0 turns the phase off.
    pub fraction: f64,
    /// Views per image in the half-side epochs.
    pub repeats: usize,
}

impl LowResPhase {
    pub fn off() -> Self {
        LowResPhase {
            fraction: 0.0,
            repeats: 1,
        }
    }
}

impl Default for LowResPhase {
    fn default() -> Self {
        LowResPhase {
            fraction: 2.0 / 3.0,
            repeats: 8,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: data::PHANTOMS.to_string(),
            load: LoadOptions::default(),
            model: UNetConfig::default(),
            augment: AugmentConfig::default(),
            loss: LossConfig::default(),
            epochs: 30,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 1e-4,
            schedule: Schedule::Cosine,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.01,
            grad_clip: None,
            seed: 0,
            init_seed: None,
            val_fraction: 0.2,
            steps_per_epoch: None,
            val_batch_size: 16,
            tta: false,
            low_res: LowResPhase::default(),
            convergence: None,
            schedule_epochs: None,
        }
    }
}

/// The convergence rule: the validation Dice, smoothed by an exponential moving average
/// (`s_t = smoothing s_(t-1) + (1 - smoothing) d_t`, `s_1 = d_1`), has plateaued at epoch `t` when the best smoothed
/// value of the last `patience` epochs is less than `min_delta` above the best before them. `epochs` stays the
/// budget: a run that never plateaus within it has not converged. The learning-rate schedule spans the budget unless
/// [`TrainConfig::schedule_epochs`] fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convergence {
    pub patience: usize,
    pub min_delta: f64,
    pub smoothing: f64,
}

impl Default for Convergence {
    fn default() -> Self {
        Convergence {
            patience: 5,
            min_delta: 0.005,
            smoothing: 0.5,
        }
    }
}

impl Convergence {
    /// The smoothed curve of `dice` (non-finite values, a diverged epoch, keep the previous smoothed value).
    pub fn smoothed(&self, dice: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::with_capacity(dice.len());
        for &d in dice {
            let s = match out.last() {
                None => d,
                Some(&prev) if !d.is_finite() => prev,
                Some(&prev) if !prev.is_finite() => d,
                Some(&prev) => self.smoothing * prev + (1.0 - self.smoothing) * d,
            };
            out.push(s);
        }
        out
    }

    /// The first epoch (1-based) at which the rule holds on the validation Dice `dice` (one value per epoch).
    pub fn converged_at(&self, dice: &[f64]) -> Option<usize> {
        let s = self.smoothed(dice);
        let best = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (self.patience + 1..=s.len()).find(|&t| {
            best(&s[t - self.patience..t]) < best(&s[..t - self.patience]) + self.min_delta
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.patience == 0 {
            return Err(Error::config("convergence.patience", "must be at least 1"));
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(Error::config(
                "convergence.min_delta",
                format!("must be finite and >= 0, got {}", self.min_delta),
            ));
        }
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(Error::config(
                "convergence.smoothing",
                format!("must be in [0, 1), got {}", self.smoothing),
            ));
        }
        Ok(())
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.convergence {
            c.validate()?;
        }
        self.model
            .validate()
            .map_err(|e| Error::config("model", e))?;
        let m = self.model.size_multiple();
        if !self.load.size.is_multiple_of(m) {
            return Err(Error::config(
                "load.size",
                format!(
                    "{} must be a multiple of {m} (2^depth) for a U-Net of depth {}",
                    self.load.size, self.model.depth
                ),
            ));
        }
        if let Some(p) = self.augment.patch {
            if p % m != 0 || p > self.load.size {
                return Err(Error::config(
                    "augment.patch",
                    format!("{p} must be a multiple of {m} and at most the image size"),
                ));
            }
        }
        for (key, n) in [
            ("epochs", self.epochs),
            ("schedule_epochs", self.schedule_epochs.unwrap_or(1)),
            ("batch_size", self.batch_size),
            ("val_batch_size", self.val_batch_size),
        ] {
            if n == 0 {
                return Err(Error::config(key, "must be positive, got 0"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config(
                "lr",
                format!("must be positive, got {}", self.lr),
            ));
        }
        if let Some(c) = self.grad_clip {
            if c <= 0.0 || !c.is_finite() {
                return Err(Error::config(
                    "grad_clip",
                    format!("must be positive, got {c}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.augment.fg_oversample) {
            return Err(Error::config(
                "augment.fg_oversample",
                format!("must be in [0, 1], got {}", self.augment.fg_oversample),
            ));
        }
        if !(0.0..=2.0).contains(&self.augment.scale) {
            return Err(Error::config(
                "augment.scale",
                format!("must be in [0, 2], got {}", self.augment.scale),
            ));
        }
        for (key, n) in [
            ("augment.repeats", self.augment.repeats),
            ("low_res.repeats", self.low_res.repeats),
        ] {
            if n == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.low_res.fraction) {
            return Err(Error::config(
                "low_res.fraction",
                format!("must be in [0, 1), got {}", self.low_res.fraction),
            ));
        }
        if self.low_res_epochs() > 0 {
            let side = self.augment.batch_side(self.load.size);
            if !side.is_multiple_of(2 * m) {
                return Err(Error::config(
                    "low_res.fraction",
                    format!(
                        "> 0 trains the first epochs at half the side ({side} / 2), which must be a multiple of {m} \
                         (2^depth): use a side that is a multiple of {}, or a low-resolution fraction of 0",
                        2 * m
                    ),
                ));
            }
        }
        for (key, v) in [
            ("augment.intensity", self.augment.intensity),
            ("augment.colour", self.augment.colour),
        ] {
            // Beyond 1 a channel's scale 1 + u could flip its sign.
            if !(0.0..1.0).contains(&v) {
                return Err(Error::config(key, format!("must be in [0, 1), got {v}")));
            }
        }
        self.loss.validate()?;
        Ok(())
    }

    /// Number of leading epochs trained at half the side ([`LowResPhase`]).
    pub fn low_res_epochs(&self) -> usize {
        (self.low_res.fraction * self.horizon_epochs() as f64).round() as usize
    }

    /// The epochs the schedules span ([`TrainConfig::schedule_epochs`], else the budget).
    pub fn horizon_epochs(&self) -> usize {
        self.schedule_epochs.unwrap_or(self.epochs)
    }

    /// The augmentation of (1-based) `epoch` and whether its batches are halved ([`LowResPhase`]).
    pub fn epoch_augment(&self, epoch: usize) -> (AugmentConfig, bool) {
        let low_res = epoch <= self.low_res_epochs();
        let repeats = if low_res {
            self.low_res.repeats
        } else {
            self.augment.repeats
        };
        (
            AugmentConfig {
                repeats,
                ..self.augment.clone()
            },
            low_res,
        )
    }

    pub fn weights_seed(&self) -> u64 {
        self.init_seed.unwrap_or(self.seed)
    }

    pub fn steps_per_epoch(&self, train_samples: usize) -> usize {
        self.steps_per_epoch
            .unwrap_or((train_samples / self.batch_size).max(1))
    }
}
