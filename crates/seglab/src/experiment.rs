//! The controlled experiment behind `seglab compare`: which variants (loss + threshold mode) run with which seeds,
//! what each run produced, and the numbers the report is made of (per-variant summaries over seeds, paired
//! comparisons against the baseline, `summary.json`, `curves.csv`).
//!
//! Variants are plain data here (loss name, threshold-mode name, numeric parameters) so that this module does not
//! depend on how `seglab-nn` spells its loss types; the runner turns a [`VariantSpec`] into the trainer's settings.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use seglab_nn::record::{EpochRecord, RunOutcome, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stats::{self, PairedComparison};

/// One arm of the experiment: a named loss + threshold-mode combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    /// Loss name as `seglab loss --loss` takes it (`tversky`, `dice`, ...).
    pub loss: String,
    /// Loss parameters by name (`alpha`, `beta`, `gamma`, `smooth`), any serde value so that the trainer's settings
    /// (numbers, names of schedules) pass through unchanged.
    #[serde(default)]
    pub loss_params: BTreeMap<String, Value>,
    /// Threshold applied to the prediction before the loss: `none`, `hard`, `ste`, `soft`, `power`.
    pub threshold_mode: String,
    /// Threshold-mode parameters by name (`threshold`; `temperature_start`/`temperature_end` for `soft`; `k` for
    /// `power`).
    #[serde(default)]
    pub threshold_params: BTreeMap<String, Value>,
}

impl VariantSpec {
    /// Whether the prediction is thresholded (in any form) before the loss: the question the experiment answers.
    pub fn thresholds_before_loss(&self) -> bool {
        self.threshold_mode != "none"
    }

    /// One line for the report, e.g. `tversky(alpha=0.3, beta=0.7) on power(k=3)`.
    pub fn describe(&self) -> String {
        fn params(p: &BTreeMap<String, Value>) -> String {
            if p.is_empty() {
                return String::new();
            }
            let inner: Vec<String> = p
                .iter()
                .map(|(k, v)| match v {
                    Value::Number(n) => format!("{k}={}", n.as_f64().unwrap_or(f64::NAN)),
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            format!("({})", inner.join(", "))
        }
        let loss = format!("{}{}", self.loss, params(&self.loss_params));
        if self.thresholds_before_loss() {
            format!(
                "{loss} on {}{}",
                self.threshold_mode,
                params(&self.threshold_params)
            )
        } else {
            format!("{loss} on probabilities")
        }
    }
}

pub const THRESHOLD_MODES: [&str; 5] = ["none", "hard", "ste", "soft", "power"];

/// The five variants of issue 5; `soft` is the baseline (model A of the motivating discussion, `hard` model B).
/// Tversky with alpha 0.3, beta 0.7; the threshold modes use the trainer's defaults for their parameters (threshold
/// 0.5, soft temperature 0.1, power k 3); `soft-threshold` anneals its temperature to 0.01.
pub fn default_variants() -> Vec<VariantSpec> {
    let tversky: BTreeMap<String, Value> = [("alpha", 0.3), ("beta", 0.7)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let v = |name: &str, mode: &str, params: &[(&str, f64)]| VariantSpec {
        name: name.to_string(),
        loss: "tversky".to_string(),
        loss_params: tversky.clone(),
        threshold_mode: mode.to_string(),
        threshold_params: params
            .iter()
            .map(|(k, x)| (k.to_string(), json!(x)))
            .collect(),
    };
    vec![
        v("soft", "none", &[]),
        v("hard", "hard", &[]),
        v("ste", "ste", &[]),
        // Annealed from the trainer's default start temperature (0.1) down to 0.01 over the run.
        v("soft-threshold", "soft", &[("temperature_end", 0.01)]),
        v("power", "power", &[]),
    ]
}

pub const DEFAULT_BASELINE: &str = "soft";

/// Picks variants by name from `available` (comma-separated list, order kept). An unknown name is an error that lists
/// the valid names, so that it surfaces before any training starts.
pub fn select_variants(names: &str, available: &[VariantSpec]) -> Result<Vec<VariantSpec>> {
    let valid = || {
        available
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen: Vec<VariantSpec> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(v) = available.iter().find(|v| v.name == name) else {
            bail!("unknown variant '{name}'; valid variants: {}", valid());
        };
        if chosen.iter().any(|c| c.name == name) {
            bail!("variant '{name}' is listed twice");
        }
        chosen.push(v.clone());
    }
    if chosen.is_empty() {
        bail!("no variant selected; valid variants: {}", valid());
    }
    Ok(chosen)
}

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
                "loss": spec.loss,
                "loss_params": spec.loss_params,
                "threshold_mode": spec.threshold_mode,
                "threshold_params": spec.threshold_params,
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

/// Columns of `curves.csv` after `variant,seed`: one row per (variant, seed, epoch).
pub const CURVE_COLUMNS: [&str; 25] = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_soft_loss",
    "val_dice",
    "val_iou",
    "val_precision",
    "val_recall",
    "val_case_dice",
    "val_soft_dice",
    "val_best_threshold",
    "val_best_threshold_dice",
    "val_best_threshold_iou",
    "val_best_threshold_precision",
    "val_best_threshold_recall",
    "val_lesion_recall",
    "val_lesion_precision",
    "val_lesion_f1",
    "grad_norm",
    "zero_grad_fraction",
    "mean_prob_lesion",
    "mean_prob_background",
    "lr",
    "seconds",
    "status",
];

/// The cells of `CURVE_COLUMNS` from `train_loss` to `seconds`: a non-finite number is written as Rust prints it
/// (`NaN`: a diverged loss), an undefined value (`None`) as an empty cell.
fn curve_cells(e: &EpochRecord) -> Vec<String> {
    let num = |x: f64| Some(x);
    [
        num(e.train_loss),
        num(e.val_loss),
        num(e.val_soft_loss),
        num(e.val_dice),
        num(e.val_iou),
        num(e.val_precision),
        num(e.val_recall),
        num(e.val_case_dice),
        num(e.val_soft_dice),
        num(e.val_best_threshold),
        num(e.val_best_threshold_dice),
        e.val_best_threshold_iou,
        e.val_best_threshold_precision,
        e.val_best_threshold_recall,
        e.val_lesion_recall,
        e.val_lesion_precision,
        e.val_lesion_f1,
        num(e.grad_norm),
        num(e.zero_grad_fraction),
        num(e.mean_prob_lesion),
        num(e.mean_prob_background),
        num(e.lr),
        num(e.seconds),
    ]
    .iter()
    .map(|v| v.map(|x| x.to_string()).unwrap_or_default())
    .collect()
}

/// `curves.csv`: every epoch of every run in long format (variant, seed, the epoch record, and the run's status:
/// `completed` or `diverged`).
pub fn write_curves_csv<W: Write>(exp: &Experiment, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["variant", "seed"];
    header.extend_from_slice(&CURVE_COLUMNS);
    w.write_record(&header)?;
    for v in &exp.variants {
        for &seed in &exp.seeds {
            let Some(r) = exp.run(&v.name, seed) else {
                continue;
            };
            let status = match r.outcome.status {
                RunStatus::Completed => "completed",
                RunStatus::Diverged { .. } => "diverged",
            };
            for e in &r.outcome.epochs {
                let mut row = vec![v.name.clone(), seed.to_string(), e.epoch.to_string()];
                row.extend(curve_cells(e));
                row.push(status.to_string());
                w.write_record(&row)?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// Writes `bytes` to `path` so that readers never see a partial file: a temporary file in the same folder, synced,
/// then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    seglab_metrics::io::write_bytes_atomic(path, bytes)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic epoch: Dice and losses follow `dice`, everything else plausible.
    pub fn epoch(epoch: usize, dice: f64, zero_grad: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0 - dice,
            val_loss: 1.0 - dice + 0.02,
            val_soft_loss: 1.0 - dice + 0.03,
            val_dice: dice,
            val_iou: dice / (2.0 - dice),
            val_precision: (dice + 0.05).min(1.0),
            val_recall: (dice - 0.05).max(0.0),
            val_case_dice: dice,
            val_soft_dice: dice - 0.04,
            val_best_threshold: 0.45,
            val_best_threshold_dice: dice + 0.01,
            val_best_threshold_iou: Some((dice + 0.01) / (2.0 - (dice + 0.01))),
            val_best_threshold_precision: Some((dice + 0.03).min(1.0)),
            val_best_threshold_recall: Some((dice - 0.01).max(0.0)),
            val_lesion_recall: Some((dice + 0.1).min(1.0)),
            // A model that barely predicts anything has no predicted lesion: precision undefined.
            val_lesion_precision: (dice > 0.05).then_some((dice + 0.05).min(1.0)),
            val_lesion_f1: None,
            grad_norm: if zero_grad == 1.0 {
                0.0
            } else {
                0.5 / epoch as f64
            },
            zero_grad_fraction: zero_grad,
            mean_prob_lesion: 0.5 + dice / 2.0,
            mean_prob_background: 0.1,
            lr: 1e-3,
            train_side: Some(64),
            seconds: 2.0,
        }
    }

    /// A run whose Dice climbs from `start` to `end` over `n` epochs; per-case Dice `end + offsets[i]`.
    pub fn outcome(start: f64, end: f64, n: usize, zero_grad: f64, offsets: &[f64]) -> RunOutcome {
        let epochs = (1..=n)
            .map(|k| {
                let t = (k - 1) as f64 / (n - 1).max(1) as f64;
                epoch(k, start + (end - start) * t, zero_grad)
            })
            .collect();
        RunOutcome {
            status: RunStatus::Completed,
            epochs,
            val_cases: (0..offsets.len()).map(|i| format!("case{i:02}")).collect(),
            val_case_dice: offsets.iter().map(|o| (end + o).clamp(0.0, 1.0)).collect(),
            prob_hist_lesion: (0..20).map(|i| if i > 10 { 50 + i } else { 5 }).collect(),
            prob_hist_background: (0..20)
                .map(|i| if i < 5 { 1000 / (i + 1) } else { 3 })
                .collect(),
            seconds: 2.0 * n as f64,
        }
    }

    /// soft learns (0.81), hard has zero gradients (0.03), ste is within noise of soft, power diverges in seed 1.
    pub fn synthetic_experiment() -> Experiment {
        let offsets: Vec<f64> = (0..12)
            .map(|i| ((i * 7) % 5) as f64 * 0.02 - 0.04)
            .collect();
        let noise: Vec<f64> = (0..12)
            .map(|i| if i % 2 == 0 { 0.015 } else { -0.015 })
            .collect();
        let mut runs = Vec::new();
        let gallery = vec![GalleryCase {
            id: "case00".into(),
            width: 8,
            height: 8,
            image: (0..64).map(|i| (i * 4) as u8).collect(),
            ground_truth: (0..64).map(|i| u8::from(i % 8 > 3)).collect(),
        }];
        for seed in 0..3u64 {
            let s = seed as f64 * 0.01;
            let mut push = |variant: &str, outcome: RunOutcome| {
                runs.push(RunResult {
                    variant: variant.into(),
                    seed,
                    outcome,
                    gallery_predictions: vec![(0..64).map(|i| u8::from(i % 8 > 4)).collect()],
                })
            };
            push("soft", outcome(0.2, 0.81 + s, 6, 0.01, &offsets));
            push(
                "hard",
                outcome(
                    0.03,
                    0.03,
                    6,
                    1.0,
                    &offsets.iter().map(|o| o - 0.78).collect::<Vec<_>>(),
                ),
            );
            let ste_offsets: Vec<f64> = offsets.iter().zip(&noise).map(|(o, n)| o + n).collect();
            push("ste", outcome(0.2, 0.81 + s, 6, 0.02, &ste_offsets));
            let mut p = outcome(0.2, 0.7, 6, 0.0, &offsets);
            if seed == 1 {
                p.status = RunStatus::Diverged { epoch: 4 };
                p.epochs.truncate(4);
                p.epochs[3].train_loss = f64::NAN;
            }
            push("power", p);
        }
        let variants = default_variants()
            .into_iter()
            .filter(|v| v.name != "soft-threshold")
            .collect();
        Experiment {
            title: "synthetic".into(),
            data: "synthetic outcomes".into(),
            preset: Some("quick".into()),
            epochs: 6,
            notes: vec![],
            baseline: "soft".into(),
            variants,
            seeds: vec![0, 1, 2],
            runs,
            gallery,
        }
    }

    #[test]
    fn unknown_variant_lists_valid_names() {
        let err = select_variants("soft,hrad", &default_variants())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant 'hrad'"), "{err}");
        assert!(
            err.contains("soft, hard, ste, soft-threshold, power"),
            "{err}"
        );
        let chosen = select_variants("ste, soft", &default_variants()).unwrap();
        assert_eq!(
            chosen.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["ste", "soft"]
        );
        assert!(select_variants("soft,soft", &default_variants()).is_err());
        assert!(select_variants(" , ", &default_variants()).is_err());
    }

    #[test]
    fn default_variants_use_known_threshold_modes_and_soft_baseline() {
        let v = default_variants();
        assert!(v
            .iter()
            .all(|v| THRESHOLD_MODES.contains(&v.threshold_mode.as_str())));
        let soft = v.iter().find(|v| v.name == DEFAULT_BASELINE).unwrap();
        assert!(!soft.thresholds_before_loss());
        assert!(v
            .iter()
            .filter(|v| v.name != "soft")
            .all(|v| v.thresholds_before_loss()));
        assert_eq!(v[1].describe(), "tversky(alpha=0.3, beta=0.7) on hard");
        let mut p = v[4].clone();
        p.threshold_params.insert("k".into(), json!(3.0));
        assert_eq!(p.describe(), "tversky(alpha=0.3, beta=0.7) on power(k=3)");
        assert_eq!(
            v[0].describe(),
            "tversky(alpha=0.3, beta=0.7) on probabilities"
        );
    }

    #[test]
    fn epochs_to_ninety_percent_of_best() {
        let e: Vec<EpochRecord> = [0.1, 0.5, 0.75, 0.8, 0.7]
            .iter()
            .enumerate()
            .map(|(i, d)| epoch(i + 1, *d, 0.0))
            .collect();
        // best 0.8, 90% = 0.72: first reached at epoch 3.
        assert_eq!(epochs_to_fraction_of_best(&e, 0.9), 3.0);
        let zero: Vec<EpochRecord> = (1..4).map(|i| epoch(i, 0.0, 1.0)).collect();
        assert!(epochs_to_fraction_of_best(&zero, 0.9).is_nan());
    }

    #[test]
    fn summary_has_the_issue_keys_and_numbers_from_the_runs() {
        let exp = synthetic_experiment();
        let a = analyze(&exp).unwrap();
        let s = summary_json(&exp, &a, &["line".to_string()]);
        assert_eq!(s["baseline"], "soft");
        assert_eq!(s["verdict"][0], "line");
        for name in ["soft", "hard", "ste", "power"] {
            let v = &s["variants"][name];
            for key in [
                "dice",
                "iou",
                "precision",
                "recall",
                "best_threshold_dice",
                "best_threshold_iou",
                "best_threshold_precision",
                "best_threshold_recall",
                "lesion_recall",
                "lesion_precision",
                "soft_dice",
                "zero_grad_fraction",
                "seconds",
            ] {
                assert!(v[key].is_object(), "{name}.{key} missing: {v}");
                for sub in ["mean", "sd", "per_seed"] {
                    assert!(v[key].get(sub).is_some(), "{name}.{key}.{sub} missing");
                }
            }
            assert!(v["status"].is_string());
        }
        // soft final Dice per seed: 0.81, 0.82, 0.83.
        let per_seed: Vec<f64> = s["variants"]["soft"]["dice"]["per_seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(per_seed.len(), 3);
        assert!((per_seed[2] - 0.83).abs() < 1e-12);
        assert!((s["variants"]["soft"]["dice"]["mean"].as_f64().unwrap() - 0.82).abs() < 1e-12);
        assert!((s["variants"]["soft"]["dice"]["sd"].as_f64().unwrap() - 0.01).abs() < 1e-12);
        let mean = |v: &str, k: &str| s["variants"][v][k]["mean"].as_f64();
        for v in ["soft", "hard", "ste", "power"] {
            // The fixture's best threshold beats 0.5 by 0.01 in every run.
            let gain = mean(v, "best_threshold_dice").unwrap() - mean(v, "dice").unwrap();
            assert!((gain - 0.01).abs() < 1e-12, "{v}: {gain}");
            let r = mean(v, "lesion_recall").unwrap();
            assert!((0.0..=1.0).contains(&r), "{v}: {r}");
        }
        // soft's last epochs: Dice 0.81..0.83, so best-threshold recall 0.80..0.82 and lesion recall 0.91..0.93.
        assert!((mean("soft", "best_threshold_recall").unwrap() - 0.81).abs() < 1e-12);
        assert!((mean("soft", "lesion_recall").unwrap() - 0.92).abs() < 1e-12);
        assert!((mean("soft", "lesion_precision").unwrap() - 0.87).abs() < 1e-12);
        // hard predicts (almost) nothing: lesion precision is undefined in every seed, null rather than NaN.
        assert!(s["variants"]["hard"]["lesion_precision"]["mean"].is_null());
        assert!(s["variants"]["hard"]["lesion_precision"]["per_seed"][0].is_null());
        assert_eq!(s["variants"]["hard"]["all_gradients_zero"], true);
        assert_eq!(s["variants"]["soft"]["all_gradients_zero"], false);
        assert_eq!(s["variants"]["power"]["status"], "partly diverged");
        assert_eq!(s["variants"]["power"]["diverged"][0]["epoch"], 4);
        assert_eq!(
            s["variants"]["power"]["dice"]["per_seed"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let comps = s["comparisons"].as_array().unwrap();
        assert_eq!(comps.len(), 3);
        let hard = comps.iter().find(|c| c["variant"] == "hard").unwrap();
        assert_eq!(hard["n_pairs"], 36);
        assert!(hard["ci_high"].as_f64().unwrap() < 0.0);
        let power = comps.iter().find(|c| c["variant"] == "power").unwrap();
        // Seed 1 diverged: only seeds 0 and 2 are paired.
        assert_eq!(power["n_pairs"], 24);
        for key in ["mean_difference", "ci_low", "ci_high", "wilcoxon_p"] {
            assert!(hard[key].is_number(), "{key}");
        }
    }

    #[test]
    fn comparison_refuses_different_validation_cases() {
        let mut exp = synthetic_experiment();
        let r = exp
            .runs
            .iter_mut()
            .find(|r| r.variant == "ste" && r.seed == 0)
            .unwrap();
        r.outcome.val_cases[0] = "other".into();
        let err = analyze(&exp).unwrap_err().to_string();
        assert!(err.contains("same split"), "{err}");
    }

    #[test]
    fn curves_csv_has_a_row_per_epoch_with_status() {
        let exp = synthetic_experiment();
        let mut buf = Vec::new();
        write_curves_csv(&exp, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("variant,seed,epoch,train_loss,val_loss"));
        // 3 completed variants x 3 seeds x 6 epochs + power: 6 + 4 + 6.
        assert_eq!(lines.len() - 1, 3 * 3 * 6 + 16);
        assert!(lines
            .iter()
            .any(|l| l.starts_with("power,1,4,NaN") && l.ends_with(",diverged")));
        assert_eq!(lines[1].split(',').count(), 2 + CURVE_COLUMNS.len());
        let header: Vec<&str> = lines[0].split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let cell = |line: &str, name: &str| line.split(',').nth(col(name)).unwrap().to_string();
        let num = |line: &str, name: &str| cell(line, name).parse::<f64>().unwrap();
        // soft seed 0 ends at Dice 0.81.
        let soft_last = lines.iter().find(|l| l.starts_with("soft,0,6,")).unwrap();
        assert!((num(soft_last, "val_lesion_recall") - 0.91).abs() < 1e-12);
        assert!((num(soft_last, "val_best_threshold_recall") - 0.80).abs() < 1e-12);
        // Undefined values are empty cells, not "NaN" or "null".
        let hard_first = lines.iter().find(|l| l.starts_with("hard,0,1,")).unwrap();
        assert_eq!(cell(hard_first, "val_lesion_precision"), "");
        assert_eq!(cell(hard_first, "val_lesion_f1"), "");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/x.json"), b"x").is_err());
    }
}
