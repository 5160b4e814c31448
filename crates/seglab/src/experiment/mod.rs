//! The controlled experiment behind `seglab compare`: which variants (loss + threshold mode) run with which seeds,
//! what each run produced, and the numbers the report is made of (per-variant summaries over seeds, paired
//! comparisons against the baseline, `summary.json`, `curves.csv`).
//!
//! Variants hold the loss and threshold-mode choices typed as the trainer's flags do (`seglab_nn::objective`); the
//! runner turns a [`VariantSpec`] into the trainer's settings.

use anyhow::{bail, Result};
use seglab_nn::record::{EpochRecord, RunOutcome, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stats::{self, PairedComparison};

/// A validation case shown in the gallery: grayscale image and ground truth (non-zero = lesion), row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GalleryCase {
    pub id: String,
    pub width: usize,
    pub height: usize,
    pub image: Vec<u8>,
    pub ground_truth: Vec<u8>,
}

/// What one (variant, seed) run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub variant: String,
    pub seed: u64,
    pub outcome: RunOutcome,
    /// Thresholded (p >= 0.5) predictions of the final model on the gallery cases, aligned with
    /// [`Experiment::gallery`] (non-zero = lesion). May be empty; the report shows the first seed that has them.
    #[serde(default)]
    pub gallery_predictions: Vec<Vec<u8>>,
}

/// Everything the report needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub title: String,
    /// Where the data came from (`builtin:phantoms`, a folder, ...).
    pub data: String,
    pub preset: Option<String>,
    pub epochs: usize,
    /// Free-form lines shown under the title (e.g. what the quick preset leaves out).
    #[serde(default)]
    pub notes: Vec<String>,
    pub baseline: String,
    pub variants: Vec<VariantSpec>,
    pub seeds: Vec<u64>,
    pub runs: Vec<RunResult>,
    #[serde(default)]
    pub gallery: Vec<GalleryCase>,
}

impl Experiment {
    pub fn runs_of<'a>(&'a self, variant: &'a str) -> impl Iterator<Item = &'a RunResult> + 'a {
        self.runs.iter().filter(move |r| r.variant == variant)
    }

    pub fn run(&self, variant: &str, seed: u64) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.variant == variant && r.seed == seed)
    }

    /// Checks the invariants the analysis relies on; the runner's results always satisfy them.
    pub fn validate(&self) -> Result<()> {
        if !self.variants.iter().any(|v| v.name == self.baseline) {
            bail!("baseline '{}' is not among the variants", self.baseline);
        }
        for r in &self.runs {
            if !self.variants.iter().any(|v| v.name == r.variant) {
                bail!("run of unknown variant '{}'", r.variant);
            }
            let o = &r.outcome;
            if o.val_case_dice.len() != o.val_cases.len() {
                bail!(
                    "run {} seed {}: {} per-case Dice values for {} validation cases",
                    r.variant,
                    r.seed,
                    o.val_case_dice.len(),
                    o.val_cases.len()
                );
            }
            if !r.gallery_predictions.is_empty() {
                if r.gallery_predictions.len() != self.gallery.len() {
                    bail!(
                        "run {} seed {}: {} gallery predictions for {} gallery cases",
                        r.variant,
                        r.seed,
                        r.gallery_predictions.len(),
                        self.gallery.len()
                    );
                }
                for (p, g) in r.gallery_predictions.iter().zip(&self.gallery) {
                    if p.len() != g.width * g.height {
                        bail!(
                            "run {} seed {}: gallery prediction for {} has {} pixels, expected {}",
                            r.variant,
                            r.seed,
                            g.id,
                            p.len(),
                            g.width * g.height
                        );
                    }
                }
            }
        }
        for g in &self.gallery {
            let n = g.width * g.height;
            if g.image.len() != n || g.ground_truth.len() != n {
                bail!(
                    "gallery case {}: buffers do not match {}x{}",
                    g.id,
                    g.width,
                    g.height
                );
            }
        }
        Ok(())
    }
}

/// Mean, sample sd and the per-seed values (seed order of [`Experiment::seeds`], completed runs only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedStat {
    pub mean: f64,
    pub sd: f64,
    pub per_seed: Vec<f64>,
}

impl SeedStat {
    pub fn of(per_seed: Vec<f64>) -> Self {
        SeedStat {
            mean: stats::mean(&per_seed),
            sd: stats::sd(&per_seed),
            per_seed,
        }
    }

    pub fn json(&self) -> Value {
        json!({"mean": finite(self.mean), "sd": finite(self.sd), "per_seed": self.per_seed.iter().map(|v| finite(*v)).collect::<Vec<_>>()})
    }
}

/// JSON has no NaN: missing numbers (no completed run) become null.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    pub seed: u64,
    pub epoch: usize,
}

/// A variant's results over seeds. Metrics are those of the final epoch of each completed run (the model whose
/// per-case Dice enters the paired comparison).
#[derive(Clone, Debug, PartialEq)]
pub struct VariantSummary {
    pub name: String,
    pub thresholds_before_loss: bool,
    pub runs: usize,
    pub completed_seeds: Vec<u64>,
    pub diverged: Vec<Divergence>,
    pub missing_seeds: Vec<u64>,
    pub dice: SeedStat,
    pub iou: SeedStat,
    pub precision: SeedStat,
    pub recall: SeedStat,
    pub best_threshold: SeedStat,
    pub best_threshold_dice: SeedStat,
    /// IoU, precision and recall at each run's own best threshold (the one of `best_threshold_dice`).
    pub best_threshold_iou: SeedStat,
    pub best_threshold_precision: SeedStat,
    pub best_threshold_recall: SeedStat,
    /// Lesion-wise recall and precision at 0.5, pooled over the validation images; NaN in a seed where undefined
    /// (no ground-truth / no predicted lesion), which makes the mean NaN (JSON null, "n/a" in the table).
    pub lesion_recall: SeedStat,
    pub lesion_precision: SeedStat,
    pub soft_dice: SeedStat,
    /// Thresholded Dice at 0.5 minus soft Dice: positive when thresholding flatters the model (under-confident
    /// probabilities above 0.5), negative when confident errors cost more once thresholded.
    pub soft_dice_gap: SeedStat,
    /// Dice after the first epoch: the level the model starts from.
    pub first_epoch_dice: SeedStat,
    /// First epoch whose validation Dice reaches 90% of the run's best; NaN when the best Dice is 0.
    pub epochs_to_90: SeedStat,
    /// Mean over epochs of the per-epoch zero-gradient fraction.
    pub zero_grad_fraction: SeedStat,
    /// Every epoch of every run (diverged ones included) had zero_grad_fraction == 1: every parameter gradient entry was
    /// exactly zero in every step.
    pub all_gradients_zero: bool,
    pub seconds: SeedStat,
}

impl VariantSummary {
    /// `completed`, `diverged` (every run diverged), `partly diverged`, or `not run`.
    pub fn status(&self) -> &'static str {
        if self.runs == 0 {
            "not run"
        } else if self.diverged.is_empty() {
            "completed"
        } else if self.completed_seeds.is_empty() {
            "diverged"
        } else {
            "partly diverged"
        }
    }
}

fn last(o: &RunOutcome) -> Option<&EpochRecord> {
    o.epochs.last()
}

pub fn epochs_to_fraction_of_best(epochs: &[EpochRecord], fraction: f64) -> f64 {
    let best = epochs
        .iter()
        .map(|e| e.val_dice)
        .filter(|d| d.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !(best > 0.0) {
        return f64::NAN;
    }
    epochs
        .iter()
        .find(|e| e.val_dice >= fraction * best)
        .map(|e| e.epoch as f64)
        .unwrap_or(f64::NAN)
}

pub fn summarize_variant(exp: &Experiment, v: &VariantSpec) -> VariantSummary {
    let mut completed: Vec<&RunResult> = Vec::new();
    let mut diverged = Vec::new();
    let mut missing = Vec::new();
    let mut runs = 0;
    for &seed in &exp.seeds {
        match exp.run(&v.name, seed) {
            None => missing.push(seed),
            Some(r) => {
                runs += 1;
                match r.outcome.status {
                    RunStatus::Completed if !r.outcome.epochs.is_empty() => completed.push(r),
                    RunStatus::Completed => missing.push(seed),
                    RunStatus::Diverged { epoch } => diverged.push(Divergence { seed, epoch }),
                }
            }
        }
    }
    let stat =
        |f: &dyn Fn(&RunResult) -> f64| SeedStat::of(completed.iter().map(|r| f(r)).collect());
    let fin = |f: fn(&EpochRecord) -> f64| {
        move |r: &RunResult| last(&r.outcome).map(f).unwrap_or(f64::NAN)
    };
    let fin_opt = |f: fn(&EpochRecord) -> Option<f64>| {
        move |r: &RunResult| last(&r.outcome).and_then(f).unwrap_or(f64::NAN)
    };
    let all_runs: Vec<&RunResult> = exp.runs_of(&v.name).collect();
    let all_gradients_zero = !all_runs.is_empty()
        && all_runs.iter().all(|r| {
            !r.outcome.epochs.is_empty()
                && r.outcome.epochs.iter().all(|e| e.zero_grad_fraction == 1.0)
        });
    VariantSummary {
        name: v.name.clone(),
        thresholds_before_loss: v.thresholds_before_loss(),
        runs,
        completed_seeds: completed.iter().map(|r| r.seed).collect(),
        diverged,
        missing_seeds: missing,
        dice: stat(&fin(|e| e.val_dice)),
        iou: stat(&fin(|e| e.val_iou)),
        precision: stat(&fin(|e| e.val_precision)),
        recall: stat(&fin(|e| e.val_recall)),
        best_threshold: stat(&fin(|e| e.val_best_threshold)),
        best_threshold_dice: stat(&fin(|e| e.val_best_threshold_dice)),
        best_threshold_iou: stat(&fin_opt(|e| e.val_best_threshold_iou)),
        best_threshold_precision: stat(&fin_opt(|e| e.val_best_threshold_precision)),
        best_threshold_recall: stat(&fin_opt(|e| e.val_best_threshold_recall)),
        lesion_recall: stat(&fin_opt(|e| e.val_lesion_recall)),
        lesion_precision: stat(&fin_opt(|e| e.val_lesion_precision)),
        soft_dice: stat(&fin(|e| e.val_soft_dice)),
        soft_dice_gap: stat(&fin(|e| e.val_dice - e.val_soft_dice)),
        first_epoch_dice: stat(&|r| {
            r.outcome
                .epochs
                .first()
                .map(|e| e.val_dice)
                .unwrap_or(f64::NAN)
        }),
        epochs_to_90: stat(&|r| epochs_to_fraction_of_best(&r.outcome.epochs, 0.9)),
        zero_grad_fraction: stat(&|r| {
            stats::mean(
                &r.outcome
                    .epochs
                    .iter()
                    .map(|e| e.zero_grad_fraction)
                    .collect::<Vec<_>>(),
            )
        }),
        all_gradients_zero,
        seconds: stat(&|r| r.outcome.seconds),
    }
}

/// A variant against the baseline, paired over (seed, validation case) where both runs completed.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub variant: String,
    pub baseline: String,
    pub seeds: Vec<u64>,
    pub n_cases: usize,
    /// Mean per-case Dice at 0.5 over the paired observations (their difference is `stats.mean_difference`).
    pub variant_mean: f64,
    pub baseline_mean: f64,
    /// None when no seed has both runs completed.
    pub stats: Option<PairedComparison>,
}

pub fn compare_to_baseline(exp: &Experiment, variant: &str) -> Result<Comparison> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut seeds = Vec::new();
    let mut n_cases = 0;
    for &seed in &exp.seeds {
        let (Some(rv), Some(rb)) = (exp.run(variant, seed), exp.run(&exp.baseline, seed)) else {
            continue;
        };
        if rv.outcome.status != RunStatus::Completed || rb.outcome.status != RunStatus::Completed {
            continue;
        }
        if rv.outcome.val_cases != rb.outcome.val_cases {
            bail!(
                "seed {seed}: variant '{variant}' was validated on other cases than the baseline '{}'; the comparison \
                 needs the same split",
                exp.baseline
            );
        }
        seeds.push(seed);
        n_cases = rv.outcome.val_cases.len();
        a.extend_from_slice(&rv.outcome.val_case_dice);
        b.extend_from_slice(&rb.outcome.val_case_dice);
    }
    Ok(Comparison {
        variant: variant.to_string(),
        baseline: exp.baseline.clone(),
        seeds,
        n_cases,
        variant_mean: stats::mean(&a),
        baseline_mean: stats::mean(&b),
        stats: (!a.is_empty()).then(|| stats::paired_comparison(&a, &b)),
    })
}

/// The numbers of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub variants: Vec<VariantSummary>,
    /// One per non-baseline variant, in variant order.
    pub comparisons: Vec<Comparison>,
}

impl Analysis {
    pub fn variant(&self, name: &str) -> Option<&VariantSummary> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn comparison(&self, name: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.variant == name)
    }
}

pub fn analyze(exp: &Experiment) -> Result<Analysis> {
    exp.validate()?;
    let variants = exp
        .variants
        .iter()
        .map(|v| summarize_variant(exp, v))
        .collect();
    let comparisons = exp
        .variants
        .iter()
        .filter(|v| v.name != exp.baseline)
        .map(|v| compare_to_baseline(exp, &v.name))
        .collect::<Result<_>>()?;
    Ok(Analysis {
        variants,
        comparisons,
    })
}

/// `summary.json`: `{"variants": {"<name>": {"dice": {"mean", "sd", "per_seed"}, "best_threshold_dice", "soft_dice",
/// "zero_grad_fraction", "seconds", "status", ...}}, "baseline", "comparisons": [...], "verdict": [...]}` (issue 5),
/// plus the other table columns (IoU, precision, recall at 0.5 and at the best threshold, lesion recall and
/// precision: each `{mean, sd, per_seed}`, null where undefined) and the settings the numbers depend on.
pub fn summary_json(exp: &Experiment, analysis: &Analysis, verdict: &[String]) -> Value {
    let mut variants = serde_json::Map::new();
    for (s, spec) in analysis.variants.iter().zip(&exp.variants) {
        variants.insert(
            s.name.clone(),
            json!({
                "loss": spec.loss.name,
                "loss_params": spec.file().loss_params,
                "threshold_mode": spec.file().threshold_mode,
                "threshold_params": spec.file().threshold_params,
                "status": s.status(),
                "completed_seeds": s.completed_seeds,
                "diverged": s.diverged.iter().map(|d| json!({"seed": d.seed, "epoch": d.epoch})).collect::<Vec<_>>(),
                "missing_seeds": s.missing_seeds,
                "dice": s.dice.json(),
                "iou": s.iou.json(),
                "precision": s.precision.json(),
                "recall": s.recall.json(),
                "best_threshold": s.best_threshold.json(),
                "best_threshold_dice": s.best_threshold_dice.json(),
                "best_threshold_iou": s.best_threshold_iou.json(),
                "best_threshold_precision": s.best_threshold_precision.json(),
                "best_threshold_recall": s.best_threshold_recall.json(),
                "lesion_recall": s.lesion_recall.json(),
                "lesion_precision": s.lesion_precision.json(),
                "soft_dice": s.soft_dice.json(),
                "soft_dice_gap": s.soft_dice_gap.json(),
                "first_epoch_dice": s.first_epoch_dice.json(),
                "epochs_to_90pct_best_dice": s.epochs_to_90.json(),
                "zero_grad_fraction": s.zero_grad_fraction.json(),
                "all_gradients_zero": s.all_gradients_zero,
                "seconds": s.seconds.json(),
            }),
        );
    }
    let comparisons: Vec<Value> = analysis
        .comparisons
        .iter()
        .map(|c| {
            let mut o = json!({
                "variant": c.variant,
                "baseline": c.baseline,
                "metric": "per-case Dice at 0.5 (variant - baseline), paired over seeds x validation cases",
                "seeds": c.seeds,
                "n_cases": c.n_cases,
                "variant_mean_case_dice": finite(c.variant_mean),
                "baseline_mean_case_dice": finite(c.baseline_mean),
            });
            if let Some(p) = &c.stats {
                let m = o.as_object_mut().unwrap();
                m.insert("n_pairs".into(), json!(p.n_pairs));
                m.insert("mean_difference".into(), finite(p.mean_difference));
                m.insert("ci_low".into(), finite(p.ci_low));
                m.insert("ci_high".into(), finite(p.ci_high));
                m.insert("ci_level".into(), json!(p.ci_level));
                m.insert("ci_method".into(), json!("percentile bootstrap"));
                m.insert("bootstrap_resamples".into(), json!(p.bootstrap_resamples));
                m.insert("bootstrap_seed".into(), json!(p.bootstrap_seed));
                m.insert("wilcoxon_p".into(), finite(p.wilcoxon.p_value));
                m.insert("wilcoxon_statistic".into(), json!(p.wilcoxon.statistic));
                m.insert("wilcoxon_n_nonzero".into(), json!(p.wilcoxon.n));
                m.insert("wilcoxon_method".into(), json!(p.wilcoxon.method.describe()));
            }
            o
        })
        .collect();
    json!({
        "title": exp.title,
        "data": exp.data,
        "preset": exp.preset,
        "epochs": exp.epochs,
        "seeds": exp.seeds,
        "notes": exp.notes,
        "baseline": exp.baseline,
        "variants": variants,
        "comparisons": comparisons,
        "verdict": verdict,
    })
}

mod curves;
#[cfg(test)]
pub(crate) mod tests;
mod variant;

pub use curves::*;
pub use variant::*;
