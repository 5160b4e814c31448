//! Threshold operators applied to the predicted probabilities before the loss.
//!
//! The question seglab answers is what happens to training when `p` is binarised before the loss.
//! Each [`ThresholdMode`] is one answer, with a precisely defined forward value and gradient:
//!
//! | mode | forward `q(p)` | gradient `dq/dp` |
//! |---|---|---|
//! | `none` | `p` | 1 |
//! | `hard` | `1` if `p >= t` else `0` | exactly 0 everywhere (`hard(p) + 0*p`) |
//! | `ste` | `1` if `p >= t` else `0` (bit-exact) | 1 (straight-through) |
//! | `soft` | `sigmoid((p - t) / T)` | `q (1 - q) / T`: vanishes away from `t` as `T` falls |
//! | `power` | `t + r * sign(p - t) * (|p - t| / r)^(1/k)`, `r = 1 - t` above `t`, `t` below | see [`ThresholdMode::Power`] |
//!
//! The rule `p >= t -> 1` is the same as `seglab_metrics::binarize`, so a hard-thresholded loss sees
//! exactly the mask the metrics score.

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Distances to the threshold below this get no gradient in `power` mode: the derivative of
/// `d^(1/k)` is infinite at `d = 0` (and `0 * inf` would make the whole gradient NaN). The forward
/// value is unaffected at `d = 0` and changes by less than `r * (1e-12 / r)^(1/k)` below it, far
/// below the f32 spacing of probabilities near any threshold in (0, 1) for moderate `k`.
const POWER_MIN_DISTANCE: f64 = 1e-12;

/// How the prediction is (or is not) binarised before the loss. `t` is the threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ThresholdMode {
    /// Raw probabilities.
    #[default]
    None,
    /// `p >= t -> 1 else 0`; the gradient reaching `p` is exactly zero (the faithful version of
    /// `pred[pred >= t] = 1; pred[pred < t] = 0`). It never panics in backward: the result is
    /// `hard(p) + 0 * p`, so it stays attached to `p`'s graph.
    Hard { t: f64 },
    /// Forward exactly `hard(p)`, backward identity: `hard(p) + (p - p.detach())`.
    #[serde(rename = "ste")]
    StraightThrough { t: f64 },
    /// `sigmoid((p - t) / temperature)`, a smooth threshold; `temperature > 0`.
    Soft { t: f64, temperature: f64 },
    /// A smooth "almost threshold" that pushes values away from `t`: with `d = |p - t|` and
    /// `r = 1 - t` for `p >= t`, `r = t` for `p < t` (so `[0, 1]` maps onto itself, `0 -> 0`,
    /// `t -> t`, `1 -> 1`):
    ///
    /// `q = t + sign(p - t) * r * (d / r)^(1/k)`, `k >= 1`.
    ///
    /// `k = 1` is the identity, `k -> inf` tends to the hard threshold. Its gradient
    /// `(1/k) (d / r)^(1/k - 1)` grows without bound next to `t`; it is defined as 0 where
    /// `d < 1e-12` (including `p == t`).
    Power { t: f64, k: f64 },
}

impl ThresholdMode {
    /// The mode names `--threshold-mode`, configs and variants take, in the order help and errors list them.
    pub const NAMES: [&'static str; 5] = ["none", "hard", "ste", "soft", "power"];

    /// Other spellings [`ThresholdMode::from_parts`] accepts, and the name each stands for.
    pub const ALIASES: [(&'static str, &'static str); 2] =
        [("straight-through", "ste"), ("straight_through", "ste")];

    /// The CLI / config name, one of [`ThresholdMode::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            ThresholdMode::None => "none",
            ThresholdMode::Hard { .. } => "hard",
            ThresholdMode::StraightThrough { .. } => "ste",
            ThresholdMode::Soft { .. } => "soft",
            ThresholdMode::Power { .. } => "power",
        }
    }

    /// The threshold, if the mode has one.
    pub fn threshold(&self) -> Option<f64> {
        match *self {
            ThresholdMode::None => None,
            ThresholdMode::Hard { t }
            | ThresholdMode::StraightThrough { t }
            | ThresholdMode::Soft { t, .. }
            | ThresholdMode::Power { t, .. } => Some(t),
        }
    }

    /// Builds a mode from its name and parameters (the CLI's `--threshold-mode`, `--threshold`,
    /// `--temperature`, `--power-k`), validated.
    pub fn from_parts(
        name: &str,
        t: f64,
        temperature: f64,
        k: f64,
    ) -> Result<Self, ThresholdError> {
        let Some(canonical) = crate::names::canonical(name, &Self::NAMES, &Self::ALIASES) else {
            return Err(ThresholdError::UnknownMode(name.to_string()));
        };
        let mode = match canonical {
            "none" => ThresholdMode::None,
            "hard" => ThresholdMode::Hard { t },
            "ste" => ThresholdMode::StraightThrough { t },
            "soft" => ThresholdMode::Soft { t, temperature },
            "power" => ThresholdMode::Power { t, k },
            other => unreachable!("'{other}' is in ThresholdMode::NAMES without a constructor"),
        };
        mode.validate()?;
        Ok(mode)
    }

    /// Checks the parameters: `0 < t < 1`, `temperature > 0`, `k >= 1`, all finite.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        if let Some(t) = self.threshold() {
            if !(t.is_finite() && t > 0.0 && t < 1.0) {
                return Err(ThresholdError::Threshold(t));
            }
        }
        match *self {
            ThresholdMode::Soft { temperature, .. }
                if !(temperature.is_finite() && temperature > 0.0) =>
            {
                Err(ThresholdError::Temperature(temperature))
            }
            ThresholdMode::Power { k, .. } if !(k.is_finite() && k >= 1.0) => {
                Err(ThresholdError::PowerK(k))
            }
            _ => Ok(()),
        }
    }

    /// Applies the operator to probabilities `p` (any shape; seglab uses `[N, C, H, W]`).
    pub fn apply<const D: usize>(&self, p: Tensor<D>) -> Tensor<D> {
        match *self {
            ThresholdMode::None => p,
            ThresholdMode::Hard { t } => {
                let hard = p.clone().greater_equal_elem(t).float();
                // `0 * p` keeps the result on p's graph so backward() works and yields zeros.
                hard + p.mul_scalar(0.0)
            }
            ThresholdMode::StraightThrough { t } => {
                let hard = p.clone().greater_equal_elem(t).float();
                // `p - p.detach()` is exactly 0 in the forward pass (so q == hard(p) bit for bit)
                // and has gradient 1.
                hard + (p.clone() - p.detach())
            }
            ThresholdMode::Soft { t, temperature } => {
                sigmoid(p.sub_scalar(t).div_scalar(temperature))
            }
            ThresholdMode::Power { t, k } => {
                let diff = p.sub_scalar(t);
                let above = diff.clone().greater_equal_elem(0.0);
                // r: the room between t and the end of [0, 1] on p's side of t.
                let r = Tensor::full(diff.shape(), t, &diff.device()).mask_fill(above, 1.0 - t);
                let d = diff.clone().abs().clamp_min(POWER_MIN_DISTANCE);
                let scaled = (d / r.clone()).powf_scalar(1.0 / k) * r;
                diff.sign() * scaled + t
            }
        }
    }
}

impl fmt::Display for ThresholdMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a bare mode name with the default parameters (`t = 0.5`, temperature 0.1, `k = 3`);
/// use [`ThresholdMode::from_parts`] to set them.
impl FromStr for ThresholdMode {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ThresholdMode::from_parts(s, DEFAULT_THRESHOLD, DEFAULT_TEMPERATURE, DEFAULT_POWER_K)
    }
}

/// Default threshold (the metrics binarise at the same value).
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// Default temperature of the soft threshold.
pub const DEFAULT_TEMPERATURE: f64 = 0.1;
/// Default exponent parameter of the power threshold.
pub const DEFAULT_POWER_K: f64 = 3.0;

/// Invalid threshold-mode parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("unknown threshold mode '{0}' (expected {names})", names = crate::names::one_of(&ThresholdMode::NAMES))]
    UnknownMode(String),
    #[error("threshold must be in (0, 1), got {0}")]
    Threshold(f64),
    #[error("temperature must be finite and > 0, got {0}")]
    Temperature(f64),
    #[error("power k must be finite and >= 1, got {0}")]
    PowerK(f64),
    #[error("training progress must be in [0, 1], got {0}")]
    Progress(f64),
    #[error("unknown annealing '{0}' (expected linear or exponential)")]
    UnknownAnnealing(String),
    #[error("temperature_end applies to the soft threshold mode only")]
    ScheduleNeedsSoft,
}

/// How the soft threshold's temperature moves from `start` to `end` over training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Annealing {
    /// `T(s) = (1 - s) T0 + s T1`.
    Linear,
    /// `T(s) = T0 (T1 / T0)^s`: equal ratios per step, the usual choice when `T1 << T0`.
    #[default]
    Exponential,
}

impl FromStr for Annealing {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linear" => Ok(Annealing::Linear),
            "exponential" | "exp" => Ok(Annealing::Exponential),
            other => Err(ThresholdError::UnknownAnnealing(other.to_string())),
        }
    }
}

impl fmt::Display for Annealing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Annealing::Linear => "linear",
            Annealing::Exponential => "exponential",
        })
    }
}

/// A soft threshold whose temperature is annealed from `start_temperature` (progress 0) to
/// `end_temperature` (progress 1), for the trainer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemperatureSchedule {
    /// The threshold `t` of the soft operator.
    pub t: f64,
    pub start_temperature: f64,
    pub end_temperature: f64,
    pub annealing: Annealing,
}

impl TemperatureSchedule {
    /// A validated schedule (threshold in (0, 1), both temperatures finite and > 0).
    pub fn new(
        t: f64,
        start_temperature: f64,
        end_temperature: f64,
        annealing: Annealing,
    ) -> Result<Self, ThresholdError> {
        let s = TemperatureSchedule {
            t,
            start_temperature,
            end_temperature,
            annealing,
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), ThresholdError> {
        ThresholdMode::Soft {
            t: self.t,
            temperature: self.start_temperature,
        }
        .validate()?;
        ThresholdMode::Soft {
            t: self.t,
            temperature: self.end_temperature,
        }
        .validate()
    }

    /// The temperature at training progress `progress` in [0, 1] (e.g. `epoch / (epochs - 1)` or
    /// `step / total_steps`); values outside are clamped.
    pub fn temperature_at(&self, progress: f64) -> f64 {
        let s = if progress.is_nan() {
            0.0
        } else {
            progress.clamp(0.0, 1.0)
        };
        let (t0, t1) = (self.start_temperature, self.end_temperature);
        match self.annealing {
            // (1 - s) T0 + s T1 rather than T0 + s (T1 - T0): exact at both ends.
            Annealing::Linear => (1.0 - s) * t0 + s * t1,
            Annealing::Exponential if s == 1.0 => t1,
            Annealing::Exponential => t0 * (t1 / t0).powf(s),
        }
    }

    /// The soft mode to use at training progress `progress` in [0, 1].
    pub fn mode_at(&self, progress: f64) -> ThresholdMode {
        ThresholdMode::Soft {
            t: self.t,
            temperature: self.temperature_at(progress),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ThresholdMode::NAMES {
            let m: ThresholdMode = name.parse().unwrap();
            assert_eq!(m.to_string(), name);
        }
        assert!("binary".parse::<ThresholdMode>().is_err());
        for (alias, name) in ThresholdMode::ALIASES {
            assert_eq!(alias.parse::<ThresholdMode>().unwrap().name(), name);
        }
        assert_eq!(
            "binary".parse::<ThresholdMode>().unwrap_err().to_string(),
            "unknown threshold mode 'binary' (expected none, hard, ste, soft or power)"
        );
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(ThresholdMode::from_parts("soft", 0.5, 0.0, 3.0).is_err());
        assert!(ThresholdMode::from_parts("soft", 0.5, -1.0, 3.0).is_err());
        assert!(ThresholdMode::from_parts("hard", 1.5, 0.1, 3.0).is_err());
        assert!(ThresholdMode::from_parts("power", 0.5, 0.1, 0.5).is_err());
        assert!(ThresholdMode::from_parts("power", 0.5, 0.1, f64::NAN).is_err());
        assert!(ThresholdMode::from_parts("power", 0.3, 0.1, 2.0).is_ok());
    }

    #[test]
    fn serde_names_match_cli_names() {
        let json = serde_json::to_string(&ThresholdMode::StraightThrough { t: 0.5 }).unwrap();
        assert_eq!(json, r#"{"mode":"ste","t":0.5}"#);
        let back: ThresholdMode = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ThresholdMode::StraightThrough { t: 0.5 });
    }

    #[test]
    fn schedules_hit_both_ends() {
        for annealing in [Annealing::Linear, Annealing::Exponential] {
            let s = TemperatureSchedule::new(0.5, 1.0, 0.01, annealing).unwrap();
            assert!((s.temperature_at(0.0) - 1.0).abs() < 1e-12);
            assert!((s.temperature_at(1.0) - 0.01).abs() < 1e-12);
            assert!((s.temperature_at(2.0) - 0.01).abs() < 1e-12);
            assert!(s.temperature_at(0.5) < 1.0 && s.temperature_at(0.5) > 0.01);
        }
        let exp = TemperatureSchedule::new(0.5, 1.0, 0.01, Annealing::Exponential).unwrap();
        assert!((exp.temperature_at(0.5) - 0.1).abs() < 1e-12);
        let lin = TemperatureSchedule::new(0.5, 1.0, 0.01, Annealing::Linear).unwrap();
        assert!((lin.temperature_at(0.5) - 0.505).abs() < 1e-12);
        assert_eq!(
            lin.mode_at(1.0),
            ThresholdMode::Soft {
                t: 0.5,
                temperature: 0.01
            }
        );
        assert!(TemperatureSchedule::new(0.5, 1.0, 0.0, Annealing::Linear).is_err());
    }
}
