//! Segmentation losses for binary masks, generic over burn's runtime device.
//!
//! Every loss takes the model output `pred` (probabilities, or logits when
//! [`LossSpec::from_logits`]), a binary `target` of the same shape (`[N, C, H, W]`, or any rank
//! with the batch first), and a [`ThresholdMode`] applied to the probabilities before the loss.
//! The pipeline is
//!
//! `p = from_logits ? sigmoid(pred) : pred`, `q = mode.apply(p)`, `loss = sum_i w_i * L_i(q, t)`.
//!
//! Region losses (sums over the whole flattened batch, or per image then averaged with
//! [`Reduction::PerImage`]); `TP = sum(q t)`, `FP = sum((1 - t) q)`, `FN = sum(t (1 - q))`:
//! - `tversky(a, b, s)`: `1 - (TP + s) / (TP + a FP + b FN + s)`.
//! - `dice(s)`: the common soft Dice `1 - (2 TP + s) / (sum q + sum t + s)`. Tversky(0.5, 0.5, s)
//!   equals soft Dice with smoothing `2 s` (multiply numerator and denominator by 2), so the
//!   `dice_perimage_s1` golden variants are `tversky(0.5, 0.5, 1)`, i.e. `dice(2)`.
//! - `focal_tversky(a, b, g, s)`: `(1 - T)^g` with `T` the Tversky index. Where `T == 1` (a
//!   perfect prediction) its derivative `-g (1 - T)^(g - 1)` is infinite for `g < 1`: PyTorch
//!   returns NaN/inf there; we return a zero gradient (the loss is at its minimum).
//! - `soft_jaccard(s)`: `1 - (TP + s) / (sum q + sum t - TP + s)` = tversky(1, 1, s).
//!
//! Pixel losses (mean over all elements; per-image averaging gives the same value because every
//! image has the same size, so [`Reduction`] does not change them):
//! - `bce`: PyTorch's `F.binary_cross_entropy`: `-mean(t max(log q, -100) + (1 - t) max(log(1 - q),
//!   -100))` with PyTorch's backward `(q - t) / max(q (1 - q), 1e-12) / numel` (not the derivative
//!   of the clamped forward: they differ at `q` in {0, 1}).
//! - `bce_clamped(eps)`: `q` clamped to `[eps, 1 - eps]`, then plain BCE; zero gradient where
//!   clamped.
//! - `bce_with_logits`: `(1 - t) z - log_sigmoid(z)` on logits `z` (stable, gradient
//!   `sigmoid(z) - t`, like `F.binary_cross_entropy_with_logits`).
//! - `focal(gamma, alpha)`: torchvision's `sigmoid_focal_loss`: `ce (1 - q_t)^gamma`, times
//!   `alpha t + (1 - alpha)(1 - t)` when `alpha` is set, averaged; computed on logits (see below).
//! - `lovasz_hinge`: Berman et al.'s binary Lovász hinge on logits, per image (`PerImage`, the
//!   default for it in the paper) or over the flattened batch (`Batch`).
//!
//! Logit losses (`bce_with_logits`, `lovasz_hinge`, `focal`) use `pred` directly when
//! `from_logits` and the mode is `none`; otherwise they use `logit(clamp(q, 1e-7, 1 - 1e-7))`
//! (the clamp passes the gradient straight through; see `logit_clamped`), so that a threshold
//! mode acts on them like on every other loss.

use std::fmt;
use std::str::FromStr;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::threshold::ThresholdMode;

/// PyTorch's `binary_cross_entropy` backward divides by `max(p (1 - p), EPSILON)` with this float.
const TORCH_BCE_GRAD_EPS: f64 = 1e-12;
/// PyTorch's `binary_cross_entropy` clamps each log at this value.
const TORCH_BCE_LOG_MIN: f64 = -100.0;
/// Probabilities are clamped to `[eps, 1 - eps]` before `logit` for the logit losses.
const LOGIT_CLAMP_EPS: f64 = 1e-7;
/// `1 - T` below this gets a zero gradient in focal Tversky (see the module docs).
const FOCAL_TVERSKY_MIN_BASE: f64 = 1e-30;

/// How region losses aggregate over the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Reduction {
    /// Sums over the whole flattened batch, one index.
    #[default]
    Batch,
    /// One index per image, then the mean over images.
    PerImage,
}

impl FromStr for Reduction {
    type Err = LossError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "batch" => Ok(Reduction::Batch),
            "per-image" | "per_image" | "perimage" => Ok(Reduction::PerImage),
            other => Err(LossError::UnknownReduction(other.to_string())),
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reduction::Batch => "batch",
            Reduction::PerImage => "per-image",
        })
    }
}

/// One loss function with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossKind {
    Tversky {
        alpha: f64,
        beta: f64,
        smooth: f64,
    },
    Dice {
        smooth: f64,
    },
    FocalTversky {
        alpha: f64,
        beta: f64,
        gamma: f64,
        smooth: f64,
    },
    SoftJaccard {
        smooth: f64,
    },
    /// PyTorch's `F.binary_cross_entropy` (log clamped at -100, PyTorch's backward).
    Bce,
    /// BCE on `q` clamped to `[eps, 1 - eps]`.
    BceClamped {
        eps: f64,
    },
    BceWithLogits,
    Focal {
        gamma: f64,
        alpha: Option<f64>,
    },
    LovaszHinge,
}

/// Parameters shared by the CLI and configs to build a [`LossKind`] from its name; `None` takes
/// each loss's own default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParams {
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub gamma: Option<f64>,
    pub smooth: Option<f64>,
    /// Only for `bce`: when set, use [`LossKind::BceClamped`] with this eps.
    pub eps: Option<f64>,
}

impl LossKind {
    /// The loss names `--loss`, configs and variants take, in the order help and errors list them.
    pub const NAMES: [&'static str; 8] = [
        "tversky",
        "dice",
        "focal-tversky",
        "jaccard",
        "bce",
        "bce-with-logits",
        "focal",
        "lovasz-hinge",
    ];

    /// Other spellings [`LossKind::from_name`] accepts, and the name each stands for.
    pub const ALIASES: [(&'static str, &'static str); 6] = [
        ("focal_tversky", "focal-tversky"),
        ("soft-jaccard", "jaccard"),
        ("soft_jaccard", "jaccard"),
        ("bce_with_logits", "bce-with-logits"),
        ("lovasz_hinge", "lovasz-hinge"),
        ("lovasz", "lovasz-hinge"),
    ];

    /// The names for help texts: `tversky, dice, ..., lovasz-hinge`.
    pub fn names_help() -> String {
        Self::NAMES.join(", ")
    }

    /// Defaults: tversky a=0.3 b=0.7 s=1; dice s=1; focal-tversky a=0.3 b=0.7 g=0.75 s=1;
    /// jaccard s=1; focal g=2 a=0.25 (torchvision's); bce with `eps` becomes `bce_clamped`.
    pub fn from_name(name: &str, p: &LossParams) -> Result<Self, LossError> {
        let Some(canonical) = crate::names::canonical(name, &Self::NAMES, &Self::ALIASES) else {
            return Err(LossError::UnknownLoss(name.to_string()));
        };
        let kind = match canonical {
            "tversky" => LossKind::Tversky {
                alpha: p.alpha.unwrap_or(0.3),
                beta: p.beta.unwrap_or(0.7),
                smooth: p.smooth.unwrap_or(1.0),
            },
            "dice" => LossKind::Dice {
                smooth: p.smooth.unwrap_or(1.0),
            },
            "focal-tversky" => LossKind::FocalTversky {
                alpha: p.alpha.unwrap_or(0.3),
                beta: p.beta.unwrap_or(0.7),
                gamma: p.gamma.unwrap_or(0.75),
                smooth: p.smooth.unwrap_or(1.0),
            },
            "jaccard" => LossKind::SoftJaccard {
                smooth: p.smooth.unwrap_or(1.0),
            },
            "bce" => match p.eps {
                Some(eps) => LossKind::BceClamped { eps },
                None => LossKind::Bce,
            },
            "bce-with-logits" => LossKind::BceWithLogits,
            "focal" => LossKind::Focal {
                gamma: p.gamma.unwrap_or(2.0),
                alpha: Some(p.alpha.unwrap_or(0.25)),
            },
            "lovasz-hinge" => LossKind::LovaszHinge,
            other => unreachable!("'{other}' is in LossKind::NAMES without a constructor"),
        };
        kind.validate()?;
        Ok(kind)
    }

    /// The CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            LossKind::Tversky { .. } => "tversky",
            LossKind::Dice { .. } => "dice",
            LossKind::FocalTversky { .. } => "focal-tversky",
            LossKind::SoftJaccard { .. } => "jaccard",
            LossKind::Bce | LossKind::BceClamped { .. } => "bce",
            LossKind::BceWithLogits => "bce-with-logits",
            LossKind::Focal { .. } => "focal",
            LossKind::LovaszHinge => "lovasz-hinge",
        }
    }

    /// Parameter ranges: `alpha, beta >= 0`, `smooth >= 0`, `gamma >= 0` (focal Tversky:
    /// `gamma > 0`), focal `alpha` in [0, 1], `0 < eps < 0.5`, all finite. A Tversky family loss
    /// with `smooth == 0` and `alpha == beta == 0` is rejected (0/0 on an empty target).
    pub fn validate(&self) -> Result<(), LossError> {
        let nonneg = |name: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(LossError::Parameter {
                    name,
                    value: v,
                    rule: "finite and >= 0",
                })
            }
        };
        match *self {
            LossKind::Tversky {
                alpha,
                beta,
                smooth,
            } => {
                nonneg("alpha", alpha)?;
                nonneg("beta", beta)?;
                nonneg("smooth", smooth)?;
                if alpha + beta + smooth == 0.0 {
                    return Err(LossError::Parameter {
                        name: "alpha + beta + smooth",
                        value: 0.0,
                        rule: "> 0",
                    });
                }
                Ok(())
            }
            LossKind::Dice { smooth } | LossKind::SoftJaccard { smooth } => {
                nonneg("smooth", smooth)
            }
            LossKind::FocalTversky {
                alpha,
                beta,
                gamma,
                smooth,
            } => {
                LossKind::Tversky {
                    alpha,
                    beta,
                    smooth,
                }
                .validate()?;
                if gamma.is_finite() && gamma > 0.0 {
                    Ok(())
                } else {
                    Err(LossError::Parameter {
                        name: "gamma",
                        value: gamma,
                        rule: "finite and > 0",
                    })
                }
            }
            LossKind::Bce | LossKind::BceWithLogits | LossKind::LovaszHinge => Ok(()),
            LossKind::BceClamped { eps } => {
                if eps.is_finite() && eps > 0.0 && eps < 0.5 {
                    Ok(())
                } else {
                    Err(LossError::Parameter {
                        name: "eps",
                        value: eps,
                        rule: "in (0, 0.5)",
                    })
                }
            }
            LossKind::Focal { gamma, alpha } => {
                nonneg("gamma", gamma)?;
                match alpha {
                    Some(a) if !(a.is_finite() && (0.0..=1.0).contains(&a)) => {
                        Err(LossError::Parameter {
                            name: "alpha",
                            value: a,
                            rule: "in [0, 1]",
                        })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether the loss works on logits (a threshold mode reaches it through `logit(clamp(q))`).
    pub fn wants_logits(&self) -> bool {
        matches!(
            self,
            LossKind::BceWithLogits | LossKind::LovaszHinge | LossKind::Focal { .. }
        )
    }
}

/// A weighted term of a [`LossSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossTerm {
    pub weight: f64,
    #[serde(flatten)]
    pub kind: LossKind,
}

/// The loss the trainer optimises: a weighted sum of terms (one term for a plain loss).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossSpec {
    pub terms: Vec<LossTerm>,
    /// `pred` holds logits (the model's raw output): `p = sigmoid(pred)`.
    #[serde(default)]
    pub from_logits: bool,
    #[serde(default)]
    pub reduction: Reduction,
}

impl LossSpec {
    /// A single loss with weight 1, on probabilities, batch reduction.
    pub fn single(kind: LossKind) -> Self {
        LossSpec {
            terms: vec![LossTerm { weight: 1.0, kind }],
            from_logits: false,
            reduction: Reduction::Batch,
        }
    }

    /// Builds a spec from the CLI form: `name` is one loss or `A+B[+C...]`; `weights` one per
    /// term (all 1 when empty).
    pub fn parse(
        name: &str,
        weights: &[f64],
        params: &LossParams,
        from_logits: bool,
        reduction: Reduction,
    ) -> Result<Self, LossError> {
        let names: Vec<&str> = name.split('+').map(str::trim).collect();
        if !weights.is_empty() && weights.len() != names.len() {
            return Err(LossError::Weights(format!(
                "{} weights for {} losses in '{name}'",
                weights.len(),
                names.len()
            )));
        }
        let terms = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Ok(LossTerm {
                    weight: weights.get(i).copied().unwrap_or(1.0),
                    kind: LossKind::from_name(n, params)?,
                })
            })
            .collect::<Result<Vec<_>, LossError>>()?;
        let spec = LossSpec {
            terms,
            from_logits,
            reduction,
        };
        spec.validate()?;
        Ok(spec)
    }

    pub fn with_from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// `tversky`, or `dice+bce` for sums.
    pub fn name(&self) -> String {
        self.terms
            .iter()
            .map(|t| t.kind.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    pub fn validate(&self) -> Result<(), LossError> {
        if self.terms.is_empty() {
            return Err(LossError::Weights("no loss terms".into()));
        }
        for term in &self.terms {
            if !term.weight.is_finite() {
                return Err(LossError::Weights(format!(
                    "weight {} is not finite",
                    term.weight
                )));
            }
            term.kind.validate()?;
        }
        Ok(())
    }

    /// The loss (shape `[1]`) of `pred` against `target` with `mode` applied to the
    /// probabilities. Generic over rank (`[N, ...]`, batch first) and device; the gradient
    /// reaches `pred` when it is tracked. Parameters are assumed valid ([`LossSpec::validate`]).
    pub fn loss<const D: usize>(
        &self,
        pred: Tensor<D>,
        target: Tensor<D>,
        mode: &ThresholdMode,
    ) -> Tensor<1> {
        let p = if self.from_logits {
            sigmoid(pred.clone())
        } else {
            pred.clone()
        };
        let q = mode.apply(p);
        let direct_logits = self.from_logits && *mode == ThresholdMode::None;
        let needs_logits = self.terms.iter().any(|t| t.kind.wants_logits());
        let logits = needs_logits.then(|| {
            if direct_logits {
                pred
            } else {
                logit_clamped(q.clone())
            }
        });

        let mut total: Option<Tensor<1>> = None;
        for term in &self.terms {
            let value = term_loss(
                &term.kind,
                q.clone(),
                logits.clone(),
                target.clone(),
                self.reduction,
            );
            let weighted = if term.weight == 1.0 {
                value
            } else {
                value.mul_scalar(term.weight)
            };
            total = Some(match total {
                None => weighted,
                Some(acc) => acc + weighted,
            });
        }
        total.expect("a LossSpec has at least one term")
    }
}

/// `logit(clamp(q, 1e-7, 1 - 1e-7))` for the logit losses, with two deliberate choices:
/// - the clamp passes the gradient straight through, so a loss on STE outputs (q in {0, 1},
///   always clamped) still trains instead of silently getting the hard mode's zero gradient;
/// - it is `log(clamp(q)) - log(clamp(1 - q))`, because `1 - 1e-7` is not representable in f32
///   (`1 - clamp(q)` would give `log(1.19e-7)` at `q = 1`) while `1 - q` is exact near 1.
fn logit_clamped<const D: usize>(q: Tensor<D>) -> Tensor<D> {
    let eps = LOGIT_CLAMP_EPS;
    let complement = q.clone().neg().add_scalar(1.0);
    let lo = straight_through_clamp(q, eps, 1.0 - eps);
    let hi = straight_through_clamp(complement, eps, 1.0 - eps);
    lo.log() - hi.log()
}

/// Forward `clamp(x, min, max)`, gradient 1.
fn straight_through_clamp<const D: usize>(x: Tensor<D>, min: f64, max: f64) -> Tensor<D> {
    let clamped = x.clone().detach().clamp(min, max);
    clamped + (x.clone() - x.detach())
}

/// Reshapes to `[groups, elements]`: one group for the whole batch, or one per image.
fn grouped<const D: usize>(x: Tensor<D>, reduction: Reduction) -> Tensor<2> {
    let dims = x.dims();
    let numel: usize = dims.iter().product();
    let groups = match reduction {
        Reduction::Batch => 1,
        Reduction::PerImage => dims[0].max(1),
    };
    x.reshape([groups, numel / groups])
}

fn term_loss<const D: usize>(
    kind: &LossKind,
    q: Tensor<D>,
    logits: Option<Tensor<D>>,
    target: Tensor<D>,
    reduction: Reduction,
) -> Tensor<1> {
    match *kind {
        LossKind::Tversky {
            alpha,
            beta,
            smooth,
        } => region_loss(q, target, reduction, alpha, beta, smooth, None),
        // (2TP + s) / (sum q + sum t + s) == (TP + s/2) / (TP + FP/2 + FN/2 + s/2).
        LossKind::Dice { smooth } => {
            region_loss(q, target, reduction, 0.5, 0.5, smooth / 2.0, None)
        }
        LossKind::SoftJaccard { smooth } => {
            region_loss(q, target, reduction, 1.0, 1.0, smooth, None)
        }
        LossKind::FocalTversky {
            alpha,
            beta,
            gamma,
            smooth,
        } => region_loss(q, target, reduction, alpha, beta, smooth, Some(gamma)),
        LossKind::Bce => bce_torch(q, target),
        LossKind::BceClamped { eps } => bce_clamped(q, target, eps),
        LossKind::BceWithLogits => bce_with_logits(logits.expect("logits prepared"), target),
        LossKind::Focal { gamma, alpha } => {
            focal(logits.expect("logits prepared"), target, gamma, alpha)
        }
        LossKind::LovaszHinge => lovasz_hinge(logits.expect("logits prepared"), target, reduction),
    }
}

/// A loss value and its gradient with respect to `pred`, both read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct LossWithGrad {
    pub loss: f32,
    /// `d loss / d pred`, same layout as `pred`.
    pub grad: Vec<f32>,
}

impl LossSpec {
    /// Evaluates the loss and `d loss / d pred` for host data of the given shape on `device`
    /// (autodiff is enabled on it here). Any rank, batch first; the CLI and tests use it.
    pub fn loss_with_grad<const D: usize>(
        &self,
        pred: &[f32],
        target: &[f32],
        shape: [usize; D],
        mode: &ThresholdMode,
        device: &Device,
    ) -> LossWithGrad {
        let device = device.clone().autodiff();
        let pred =
            Tensor::<D>::from_data(TensorData::new(pred.to_vec(), shape), &device).require_grad();
        let target = Tensor::<D>::from_data(TensorData::new(target.to_vec(), shape), &device);
        let loss = self.loss(pred.clone(), target, mode);
        let grads = loss.backward();
        let grad = pred
            .grad(&grads)
            .map(|g| g.into_data().try_into_vec::<f32>().expect("f32 gradient"))
            .unwrap_or_else(|| vec![0.0; shape.iter().product()]);
        let loss = loss.into_data().try_into_vec::<f32>().expect("f32 loss")[0];
        LossWithGrad { loss, grad }
    }
}

/// Invalid loss parameters or inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("unknown loss '{0}' (expected {names}, or A+B)", names = crate::names::one_of(&LossKind::NAMES))]
    UnknownLoss(String),
    #[error("unknown reduction '{0}' (expected batch or per-image)")]
    UnknownReduction(String),
    #[error("{name} must be {rule}, got {value}")]
    Parameter {
        name: &'static str,
        value: f64,
        rule: &'static str,
    },
    #[error("weights: {0}")]
    Weights(String),
}

mod bce;
mod check;
mod focal;
mod lovasz;
mod region;
#[cfg(test)]
mod tests;

use bce::*;
pub use check::*;
use focal::*;
use lovasz::*;
use region::*;
