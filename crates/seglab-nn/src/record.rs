//! What training reports: one `EpochRecord` per epoch (a line of `metrics.jsonl`, a row of `metrics.csv`) and the
//! final `RunOutcome`. The trainer writes these; `seglab compare` reads them to build its report.
use serde::{Deserialize, Serialize};

/// One epoch of training followed by validation. Validation metrics are computed by `seglab-metrics` at threshold 0.5
/// (the same code as `seglab evaluate`); `val_loss` is the training loss (with its threshold mode) on validation data,
/// `val_soft_loss` the loss without thresholding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_soft_loss: f64,
    /// Dice of the merged validation confusion counts at threshold 0.5.
    pub val_dice: f64,
    pub val_iou: f64,
    pub val_precision: f64,
    pub val_recall: f64,
    /// Mean over validation cases of the per-case Dice at 0.5 (empty-mask policy: both empty -> 1).
    pub val_case_dice: f64,
    /// Soft Dice `2 sum(p t) / (sum p + sum t)` on validation probabilities.
    pub val_soft_dice: f64,
    /// Threshold in 0.05..0.95 maximising validation Dice, and that Dice.
    pub val_best_threshold: f64,
    pub val_best_threshold_dice: f64,
    /// L2 norm of all parameter gradients, mean over the epoch's steps.
    pub grad_norm: f64,
    /// Fraction of parameter-gradient entries exactly zero, mean over the epoch's steps.
    pub zero_grad_fraction: f64,
    /// Mean predicted probability on validation pixels inside / outside lesions.
    pub mean_prob_lesion: f64,
    pub mean_prob_background: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    /// The training loss became NaN or infinite at this epoch; training stopped.
    Diverged {
        epoch: usize,
    },
}

/// Final validation results of a run, with per-case values for paired comparisons between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub epochs: Vec<EpochRecord>,
    /// Validation case ids, in a fixed order shared by every run on the same split.
    pub val_cases: Vec<String>,
    /// Per-case Dice at threshold 0.5 of the final model, aligned with `val_cases`.
    pub val_case_dice: Vec<f64>,
    /// Histograms (20 bins on [0,1]) of predicted probabilities on validation pixels inside and outside lesions.
    pub prob_hist_lesion: Vec<u64>,
    pub prob_hist_background: Vec<u64>,
    pub seconds: f64,
}
