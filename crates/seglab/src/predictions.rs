//! `seglab compare --predictions`: models trained anywhere, compared through their prediction folders against one
//! ground truth. This module holds what was measured (per model and case, the metrics engine's [`CaseResult`]s at the
//! model's threshold, its soft Dice, threshold sweep and probability histogram), the analysis (the same case-level
//! comparisons, Holm families and answers as the trained compare: [`crate::experiment::compare_family`],
//! [`crate::experiment::answer_from`]) and `summary.json`. Reading and scoring the files is the command's
//! (`commands/compare_predictions.rs`); the HTML page is `report::predictions`.
use anyhow::{bail, Result};
use rayon::prelude::*;
use seglab_metrics::evaluate::{higher_is_better, CaseResult, EmptyPolicy};
use seglab_metrics::summary::{summarize, Summary, SweepResult};
use serde_json::{json, Value};

use crate::experiment::{
    answer_from, compare_family, finite, MetricComparison, MetricInfo, VariantAnswer, ALPHA,
};
use crate::stats;

/// The metrics compared when `--metrics` is not given, the primary one (which gives the answer) first.
pub const DEFAULT_METRICS: [&str; 4] = ["dice", "hd95", "nsd", "lesion_f1"];

/// One model's scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelResult {
    pub name: String,
    pub folder: String,
    /// The threshold its probabilities were binarised at.
    pub threshold: f32,
    /// Chosen on the validation cases (the threshold of the sweep with the highest mean Dice there), else fixed.
    pub threshold_from_validation: bool,
    /// Any value strictly between 0 and 1 in its files (else the predictions are masks and no threshold matters).
    pub probabilistic: bool,
    /// One per reported case, in [`PredictionExperiment::cases`] order.
    pub cases: Vec<CaseResult>,
    /// Per reported case, `2 sum(p t) / (sum p + sum t)` (1 when both sums are 0).
    pub soft_dice: Vec<f64>,
    /// The threshold sweep over the reported cases (mean Dice per threshold).
    pub sweep: SweepResult,
    /// The sweep over the validation cases that chose the threshold.
    pub val_sweep: Option<SweepResult>,
    /// Probabilities of the reported cases inside / outside the ground-truth lesions, 20 bins on [0, 1].
    pub hist_lesion: Vec<u64>,
    pub hist_background: Vec<u64>,
}

impl ModelResult {
    /// Mean Dice at the model's threshold and mean soft Dice over the reported cases.
    pub fn dice_and_soft_dice(&self) -> (f64, f64) {
        let dice = stats::mean(
            &self
                .values("dice")
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        );
        (dice, stats::mean(&self.soft_dice))
    }

    /// The per-case values of `metric`, `None` where undefined (left out of the comparison with that case).
    pub fn values(&self, metric: &str) -> Vec<Option<f64>> {
        self.cases
            .iter()
            .map(|c| {
                if c.status.in_summary {
                    c.metrics.get(metric).flatten().filter(|v| v.is_finite())
                } else {
                    None
                }
            })
            .collect()
    }
}

/// A test case shown in the report: grayscale image, ground truth and each model's prediction (row-major, 2D).
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryEntry {
    pub case: crate::experiment::GalleryCase,
    /// Per model (in model order), its binarised prediction.
    pub predictions: Vec<Vec<u8>>,
    /// Why this case was chosen.
    pub why: String,
}

/// Everything the report of a prediction comparison needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionExperiment {
    pub title: String,
    pub gt: String,
    pub baseline: String,
    /// Compared metrics, the primary first.
    pub metrics: Vec<String>,
    /// Cases that chose the thresholds (reported on no table).
    pub val_cases: Vec<String>,
    /// Reported cases, in name order.
    pub cases: Vec<String>,
    pub models: Vec<ModelResult>,
    pub empty_policy: EmptyPolicy,
    /// The metrics engine's settings and the command's options, as `evaluate` writes them.
    pub settings: Value,
    pub gallery: Vec<GalleryEntry>,
}

/// Checks a `--metrics` list: known, comparable (not a count), no duplicates.
pub fn parse_metrics(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        if higher_is_better(m).is_none() {
            let valid: Vec<&str> = seglab_metrics::evaluate::Metrics::NAMES
                .iter()
                .copied()
                .filter(|n| higher_is_better(n).is_some())
                .collect();
            bail!(
                "--metrics: '{m}' is not a comparable metric; valid: {}",
                valid.join(", ")
            );
        }
        if out.iter().any(|x| x == m) {
            bail!("--metrics: '{m}' is listed twice");
        }
        out.push(m.to_string());
    }
    if out.is_empty() {
        bail!("--metrics: no metric given");
    }
    Ok(out)
}

pub fn metric_info(key: &str) -> MetricInfo {
    MetricInfo {
        key: key.to_string(),
        label: key.to_string(),
        higher_is_better: higher_is_better(key).unwrap_or(true),
    }
}

/// The numbers of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictionAnalysis {
    /// Per model, the `evaluate` summary of its reported cases.
    pub summaries: Vec<Summary>,
    /// Per metric (in `metrics` order), one per non-baseline model.
    pub comparisons: Vec<MetricComparison>,
    /// One per non-baseline model, from the primary metric.
    pub answers: Vec<VariantAnswer>,
}

impl PredictionAnalysis {
    pub fn comparison(&self, model: &str, metric: &str) -> Option<&MetricComparison> {
        self.comparisons
            .iter()
            .find(|c| c.variant == model && c.metric.key == metric)
    }

    pub fn answer(&self, model: &str) -> Option<&VariantAnswer> {
        self.answers.iter().find(|a| a.variant == model)
    }
}

impl PredictionExperiment {
    pub fn model(&self, name: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn analyze(&self) -> Result<PredictionAnalysis> {
        let Some(base) = self.model(&self.baseline) else {
            bail!("baseline '{}' is not among the models", self.baseline);
        };
        for m in &self.models {
            let names: Vec<&str> = m.cases.iter().map(|c| c.case.as_str()).collect();
            if names != self.cases {
                bail!(
                    "model '{}' was scored on other cases than the report's",
                    m.name
                );
            }
        }
        // Families (one per metric) and the models' summaries are independent: computed side by side.
        let families = || -> Vec<Vec<MetricComparison>> {
            self.metrics
                .par_iter()
                .map(|key| {
                    let info = metric_info(key);
                    let base_values = base.values(key);
                    let inputs = self
                        .models
                        .iter()
                        .filter(|m| m.name != self.baseline)
                        .map(|m| {
                            // A case enters a metric's comparison when both models define it there.
                            let (a, b): (Vec<Vec<f64>>, Vec<Vec<f64>>) = m
                                .values(key)
                                .into_iter()
                                .zip(&base_values)
                                .filter_map(|(x, y)| Some((vec![x?], vec![(*y)?])))
                                .unzip();
                            let paired = if a.is_empty() {
                                Err(format!(
                                    "no case where both {} and {} have a defined {key}",
                                    m.name, self.baseline
                                ))
                            } else {
                                Ok((vec![0], a, b))
                            };
                            (m.name.clone(), paired)
                        })
                        .collect();
                    compare_family(&info, &self.baseline, inputs)
                })
                .collect()
        };
        let summaries = || -> Vec<Summary> {
            self.models
                .par_iter()
                .map(|m| summarize(&m.cases, self.empty_policy))
                .collect()
        };
        let (families, summaries) = rayon::join(families, summaries);
        let comparisons: Vec<MetricComparison> = families.into_iter().flatten().collect();
        let answers = comparisons
            .iter()
            .filter(|c| c.metric.key == self.metrics[0])
            .map(|c| answer_from(c, &[]))
            .collect();
        Ok(PredictionAnalysis {
            summaries,
            comparisons,
            answers,
        })
    }
}

/// `summary.json` of a prediction comparison: the same `comparisons`, `answer` and `answer_reasons` as the trained
/// compare, plus `models: {name: folder}`, each model's threshold, summary, sweep and soft-Dice gap.
pub fn summary_json(
    exp: &PredictionExperiment,
    a: &PredictionAnalysis,
    verdict: &[String],
) -> Value {
    let models: serde_json::Map<String, Value> = exp
        .models
        .iter()
        .map(|m| (m.name.clone(), json!(m.folder)))
        .collect();
    let mut per_model = serde_json::Map::new();
    for (m, s) in exp.models.iter().zip(&a.summaries) {
        let dice = stats::mean(&m.values("dice").into_iter().flatten().collect::<Vec<_>>());
        let soft = stats::mean(&m.soft_dice);
        per_model.insert(
            m.name.clone(),
            json!({
                "folder": m.folder,
                "threshold": m.threshold,
                "threshold_from_validation": m.threshold_from_validation,
                "probabilistic": m.probabilistic,
                "summary": s,
                "soft_dice": finite(soft),
                "soft_dice_gap": finite(dice - soft),
                "sweep": m.sweep,
                "val_sweep": m.val_sweep,
            }),
        );
    }
    let answer: serde_json::Map<String, Value> = a
        .answers
        .iter()
        .map(|x| (x.variant.clone(), json!(x.answer)))
        .collect();
    let reasons: serde_json::Map<String, Value> = a
        .answers
        .iter()
        .map(|x| (x.variant.clone(), json!(x.reason)))
        .collect();
    json!({
        "title": exp.title,
        "gt": exp.gt,
        "baseline": exp.baseline,
        "models": models,
        "metrics": exp.metrics,
        "primary_metric": exp.metrics[0],
        "alpha": ALPHA,
        "split": {"val": exp.val_cases.len(), "test": exp.cases.len()},
        "val_cases": exp.val_cases,
        "test_cases": exp.cases,
        "settings": exp.settings,
        "per_model": per_model,
        "comparisons": a.comparisons.iter().map(crate::experiment::comparison_json).collect::<Vec<_>>(),
        "answer": answer,
        "answer_reasons": reasons,
        "verdict": verdict,
    })
}
