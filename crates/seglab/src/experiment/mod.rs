//! The controlled experiment behind `seglab compare`: which variants (loss + threshold mode) run with which seeds on
//! which split, what each run produced (its training record and its selected model's test scores), and the numbers
//! the report is made of ([`analysis`]: per-variant summaries, case-level comparisons and answers; `summary.json`;
//! `curves.csv`).
//!
//! Variants hold the loss and threshold-mode choices typed as the trainer's flags do (`seglab_nn::objective`); the
//! runner turns a [`VariantSpec`] into the trainer's settings.

use anyhow::{bail, Result};
use seglab_nn::record::RunOutcome;
use seglab_nn::train::Convergence;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stats;

/// A test case shown in the gallery: grayscale image and ground truth (non-zero = lesion), row-major.
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
    /// The selected model's scores on the test cases; `None` for a run that diverged before it had one.
    #[serde(default)]
    pub test: Option<TestScores>,
}

/// Case counts of the split (train / validation / test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Everything the report needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub title: String,
    /// Where the data came from (`builtin:phantoms`, a folder, ...).
    pub data: String,
    pub preset: Option<String>,
    /// The epoch budget of each run.
    pub epochs: usize,
    /// The length of the learning-rate schedule and annealing when fixed ([`seglab_nn::train::TrainConfig::schedule_epochs`]).
    #[serde(default)]
    pub schedule_epochs: Option<usize>,
    /// The convergence rule the runs trained under; `None` trains the whole budget (and no answer can be given).
    #[serde(default)]
    pub convergence: Option<Convergence>,
    #[serde(default)]
    pub split: SplitCounts,
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
            if let Some(t) = &r.test {
                for m in &TEST_METRICS {
                    if t.metric(m.key).len() != t.cases.len() {
                        bail!(
                            "run {} seed {}: {} '{}' scores for {} test cases",
                            r.variant,
                            r.seed,
                            t.metric(m.key).len(),
                            m.key,
                            t.cases.len()
                        );
                    }
                }
            }
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
pub(crate) fn finite(v: f64) -> Value {
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

mod analysis;
mod curves;
mod held_out;
mod summary;
#[cfg(test)]
pub(crate) mod tests;
mod variant;

pub use analysis::*;
pub use curves::*;
pub use held_out::*;
pub use summary::*;
pub use variant::*;
