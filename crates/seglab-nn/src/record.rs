//! What training reports: one `EpochRecord` per epoch (a line of `metrics.jsonl`, a row of `metrics.csv`) and the
//! final `RunOutcome`. The trainer writes these; `seglab compare` reads them to build its report.
use seglab_metrics::pooled::PooledScores;
use serde::{Deserialize, Deserializer, Serialize};

/// serde_json writes a non-finite float as `null`; it is read back as NaN, so that a record holding a diverged value
/// (an overflowing gradient norm, a NaN loss) and the checkpoint that carries it still load.
pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One epoch of training followed by validation. Validation metrics are `seglab_metrics::pooled`'s at threshold 0.5
/// (counts pooled over the validation images, on the same counts as `seglab evaluate`); `val_loss` is the training loss (with its threshold mode) on validation data,
/// `val_soft_loss` the loss without thresholding. Pixel scores of the merged counts that are undefined (0/0) follow
/// `seglab evaluate`'s default empty-mask policy (both empty -> 1, else 0). Fields added after the first release are
/// `#[serde(default)]`, so records of older runs (checkpoints, `outcome.json`) still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_soft_loss: f64,
    /// Dice of the merged validation confusion counts at threshold 0.5.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_dice: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_iou: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_precision: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_recall: f64,
    /// Mean over validation cases of the per-case Dice at 0.5 (empty-mask policy: both empty -> 1).
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_case_dice: f64,
    /// Soft Dice `2 sum(p t) / (sum p + sum t)` on validation probabilities.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_soft_dice: f64,
    /// Threshold in 0.05..0.95 maximising validation Dice (of the merged counts), and that Dice.
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_best_threshold: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_best_threshold_dice: f64,
    /// IoU, precision and recall of the merged validation counts at `val_best_threshold` (the same sweep). `None`
    /// only in records written before these fields existed.
    #[serde(default)]
    pub val_best_threshold_iou: Option<f64>,
    #[serde(default)]
    pub val_best_threshold_precision: Option<f64>,
    #[serde(default)]
    pub val_best_threshold_recall: Option<f64>,
    /// Lesion-wise scores at threshold 0.5 (`seglab_metrics::lesion`: connected components of each validation image,
    /// 8-connectivity), pooled over the validation images: lesion counts are summed, then divided. `None` (JSON null)
    /// when undefined: recall without any ground-truth lesion, precision without any predicted lesion, F1 when
    /// either is; also in records written before these fields existed.
    #[serde(default)]
    pub val_lesion_recall: Option<f64>,
    #[serde(default)]
    pub val_lesion_precision: Option<f64>,
    #[serde(default)]
    pub val_lesion_f1: Option<f64>,
    /// L2 norm of all parameter gradients, mean over the epoch's steps.
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_norm: f64,
    /// Fraction of parameter-gradient entries exactly zero, mean over the epoch's steps.
    #[serde(deserialize_with = "f64_or_nan")]
    pub zero_grad_fraction: f64,
    /// Mean predicted probability on validation pixels inside / outside lesions.
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_prob_lesion: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_prob_background: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub lr: f64,
    /// Side of this epoch's training batches: the patch or image side, half of it in the low-resolution epochs.
    /// `None` in records written before this field existed.
    #[serde(default)]
    pub train_side: Option<usize>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
}

/// What an epoch of training itself measured (means over its steps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochTraining {
    pub loss: f64,
    pub grad_norm: f64,
    pub zero_grad_fraction: f64,
    pub lr: f64,
    pub side: usize,
}

impl EpochRecord {
    /// The record of one epoch: its training figures, the validation losses and the pooled validation scores
    /// (`seglab_metrics::pooled`). A validation metric added there reaches the record here and its table columns in
    /// [`EpochRecord::COLUMNS`].
    pub fn of_epoch(
        epoch: usize,
        training: EpochTraining,
        val_loss: f64,
        val_soft_loss: f64,
        val: &PooledScores,
        seconds: f64,
    ) -> Self {
        let (at_half, at_best) = (&val.at_threshold, &val.at_best_threshold);
        EpochRecord {
            epoch,
            train_loss: training.loss,
            val_loss,
            val_soft_loss,
            val_dice: at_half.dice,
            val_iou: at_half.iou,
            val_precision: at_half.precision,
            val_recall: at_half.recall,
            val_case_dice: val.mean_case_dice,
            val_soft_dice: val.soft_dice,
            val_best_threshold: val.best_threshold,
            val_best_threshold_dice: at_best.dice,
            val_best_threshold_iou: Some(at_best.iou),
            val_best_threshold_precision: Some(at_best.precision),
            val_best_threshold_recall: Some(at_best.recall),
            val_lesion_recall: val.lesions.recall(),
            val_lesion_precision: val.lesions.precision(),
            val_lesion_f1: val.lesions.f1(),
            grad_norm: training.grad_norm,
            zero_grad_fraction: training.zero_grad_fraction,
            mean_prob_lesion: val.mean_prob_lesion,
            mean_prob_background: val.mean_prob_background,
            lr: training.lr,
            train_side: Some(training.side),
            seconds,
        }
    }
}

/// One cell of an epoch record's table row: the CSV writers format each kind their own way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    Number(f64),
    Count(usize),
    /// Undefined (JSON null): an empty cell.
    Missing,
}

impl EpochRecord {
    /// The columns of an epoch's table row after `epoch`, in declaration order, and how to read each: the one
    /// definition `metrics.csv` (sorted by name) and `compare`'s `curves.csv` (in this order) are written from.
    pub const COLUMNS: [(&'static str, fn(&EpochRecord) -> Cell); 24] = [
        ("train_loss", |e| Cell::Number(e.train_loss)),
        ("val_loss", |e| Cell::Number(e.val_loss)),
        ("val_soft_loss", |e| Cell::Number(e.val_soft_loss)),
        ("val_dice", |e| Cell::Number(e.val_dice)),
        ("val_iou", |e| Cell::Number(e.val_iou)),
        ("val_precision", |e| Cell::Number(e.val_precision)),
        ("val_recall", |e| Cell::Number(e.val_recall)),
        ("val_case_dice", |e| Cell::Number(e.val_case_dice)),
        ("val_soft_dice", |e| Cell::Number(e.val_soft_dice)),
        ("val_best_threshold", |e| Cell::Number(e.val_best_threshold)),
        ("val_best_threshold_dice", |e| {
            Cell::Number(e.val_best_threshold_dice)
        }),
        ("val_best_threshold_iou", |e| {
            optional(e.val_best_threshold_iou)
        }),
        ("val_best_threshold_precision", |e| {
            optional(e.val_best_threshold_precision)
        }),
        ("val_best_threshold_recall", |e| {
            optional(e.val_best_threshold_recall)
        }),
        ("val_lesion_recall", |e| optional(e.val_lesion_recall)),
        ("val_lesion_precision", |e| optional(e.val_lesion_precision)),
        ("val_lesion_f1", |e| optional(e.val_lesion_f1)),
        ("grad_norm", |e| Cell::Number(e.grad_norm)),
        ("zero_grad_fraction", |e| Cell::Number(e.zero_grad_fraction)),
        ("mean_prob_lesion", |e| Cell::Number(e.mean_prob_lesion)),
        ("mean_prob_background", |e| {
            Cell::Number(e.mean_prob_background)
        }),
        ("lr", |e| Cell::Number(e.lr)),
        ("train_side", |e| {
            e.train_side.map_or(Cell::Missing, Cell::Count)
        }),
        ("seconds", |e| Cell::Number(e.seconds)),
    ];
}

fn optional(v: Option<f64>) -> Cell {
    v.map_or(Cell::Missing, Cell::Number)
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
    /// With a convergence rule (`TrainConfig::convergence`): whether the validation Dice plateaued within the epoch
    /// budget, and the epoch at which it did (the run stopped there). Both absent without a rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_epoch: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_every_field_but_the_epoch() {
        let r: EpochRecord = serde_json::from_str(
            r#"{"epoch":1,"train_loss":1,"val_loss":1,"val_soft_loss":1,"val_dice":1,"val_iou":1,"val_precision":1,
            "val_recall":1,"val_case_dice":1,"val_soft_dice":1,"val_best_threshold":0.5,"val_best_threshold_dice":1,
            "grad_norm":1,"zero_grad_fraction":0,"mean_prob_lesion":1,"mean_prob_background":0,"lr":1,"seconds":1}"#,
        )
        .unwrap();
        let value = serde_json::to_value(&r).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.retain(|k| *k != "epoch");
        let mut columns: Vec<&str> = EpochRecord::COLUMNS.iter().map(|(n, _)| *n).collect();
        columns.sort();
        fields.sort();
        assert_eq!(fields, columns);
    }

    fn record() -> EpochRecord {
        EpochRecord {
            epoch: 1,
            train_loss: 0.5,
            val_loss: 0.5,
            val_soft_loss: 0.5,
            // Needs the last digit: serde_json's default float parser reads this back one ulp off.
            val_dice: 0.9883853299755387,
            val_iou: 0.1,
            val_precision: 0.2,
            val_recall: 0.3,
            val_case_dice: 0.4,
            val_soft_dice: 0.5,
            val_best_threshold: 0.45,
            val_best_threshold_dice: 0.99,
            val_best_threshold_iou: Some(0.98),
            val_best_threshold_precision: Some(0.97),
            val_best_threshold_recall: Some(1.0 / 3.0),
            val_lesion_recall: Some(2.0 / 3.0),
            val_lesion_precision: None,
            val_lesion_f1: None,
            grad_norm: 1.0,
            zero_grad_fraction: 0.0,
            mean_prob_lesion: 0.7,
            mean_prob_background: 0.1,
            lr: 1e-3,
            train_side: Some(64),
            seconds: 1.5,
        }
    }

    #[test]
    fn records_round_trip_exactly_and_undefined_is_null() {
        let r = record();
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"val_lesion_precision\":null"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
        // Checkpoints carry the records as JSON: a resumed run must continue from bit-identical values.
        let back: EpochRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.val_dice.to_bits(), r.val_dice.to_bits());
        assert_eq!(back, r);
    }

    #[test]
    fn records_of_older_runs_still_load() {
        let mut v = serde_json::to_value(record()).unwrap();
        let m = v.as_object_mut().unwrap();
        for k in [
            "val_best_threshold_iou",
            "val_best_threshold_precision",
            "val_best_threshold_recall",
            "val_lesion_recall",
            "val_lesion_precision",
            "val_lesion_f1",
        ] {
            assert!(m.remove(k).is_some(), "{k}");
        }
        let old: EpochRecord = serde_json::from_value(v).unwrap();
        assert_eq!(old.val_lesion_recall, None);
        assert_eq!(old.val_best_threshold_iou, None);
        assert_eq!(old.val_dice, record().val_dice);
    }

    #[test]
    fn non_finite_values_load_back_as_nan() {
        let mut r = record();
        r.grad_norm = f64::INFINITY;
        r.val_loss = f64::NAN;
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"grad_norm\":null"), "{text}");
        let back: EpochRecord = serde_json::from_str(&text).unwrap();
        assert!(back.grad_norm.is_nan() && back.val_loss.is_nan());
        assert_eq!(back.val_dice, r.val_dice);
    }
}
