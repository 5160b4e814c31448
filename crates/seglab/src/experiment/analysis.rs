//! The numbers of the report: per-variant summaries over seeds, the case-level comparisons of every test metric
//! against the baseline (Holm-adjusted across the variants, one family per metric), and each variant's answer.
//!
//! The protocol (issue 16): validation chose each run's checkpoint and threshold ([`super::held_out`]); the test cases
//! give the numbers; the case is the statistical unit ([`seglab_metrics::comparison`]). A variant's answer is read from
//! the primary metric (Dice at 0.5 on the test cases) and is `inconclusive` whenever the variant or the baseline did not
//! converge under the rule in some seed, trained without a rule, or diverged: then the difference may measure how fast
//! each learns rather than where it ends. Learning speed is summarised on its own ([`VariantSummary::epochs_to_90`]).
use anyhow::{bail, Result};
use rayon::prelude::*;
use seglab_metrics::comparison::{adjust_family, answer, compare_by_case, Answer, CaseComparison};
use seglab_nn::record::{EpochRecord, RunStatus};

use super::*;
use crate::stats;

/// Significance level of the answers (after Holm's correction).
pub const ALPHA: f64 = 0.05;
/// Below 6 cases a two-sided Wilcoxon signed-rank test cannot reach p < 0.05 (its smallest exact p is 2/2^n).
pub const MIN_CASES: usize = 6;

/// One completed run's protocol facts.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedProtocol {
    pub seed: u64,
    /// `None` when the run trained without a convergence rule.
    pub converged: Option<bool>,
    pub converged_epoch: Option<usize>,
    pub epochs_trained: usize,
    pub selected_epoch: usize,
    pub threshold: f64,
    pub val_dice: f64,
}

/// A variant's results over seeds. Test metrics are per seed the mean over the test cases of the selected model;
/// validation figures are those of the selected epoch; learning figures come from all epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantSummary {
    pub name: String,
    pub thresholds_before_loss: bool,
    pub runs: usize,
    /// Completed runs with test scores, in seed order.
    pub completed_seeds: Vec<u64>,
    pub diverged: Vec<Divergence>,
    pub missing_seeds: Vec<u64>,
    pub seeds: Vec<SeedProtocol>,
    /// One per [`TEST_METRICS`] entry, same order.
    pub test: Vec<SeedStat>,
    pub selected_epoch: SeedStat,
    pub threshold: SeedStat,
    pub val_dice: SeedStat,
    pub soft_dice: SeedStat,
    /// Validation Dice at 0.5 minus soft Dice at the selected epoch: positive when thresholding flatters the model
    /// (under-confident probabilities above 0.5), negative when confident errors cost more once thresholded.
    pub soft_dice_gap: SeedStat,
    /// Validation Dice after the first epoch: the level the model starts from.
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

    /// Whether every completed seed converged under the rule; `None` without a rule (or without completed seeds).
    pub fn converged(&self) -> Option<bool> {
        if self.seeds.is_empty() || self.seeds.iter().any(|s| s.converged.is_none()) {
            return None;
        }
        Some(self.seeds.iter().all(|s| s.converged == Some(true)))
    }

    pub fn test_stat(&self, key: &str) -> &SeedStat {
        let i = TEST_METRICS
            .iter()
            .position(|m| m.key == key)
            .expect("a test metric key");
        &self.test[i]
    }
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

/// A run that enters the comparison: completed, with test scores.
fn usable(r: &RunResult) -> Option<&TestScores> {
    match r.outcome.status {
        RunStatus::Completed if !r.outcome.epochs.is_empty() => r.test.as_ref(),
        _ => None,
    }
}

pub fn summarize_variant(exp: &Experiment, v: &VariantSpec) -> VariantSummary {
    let mut completed: Vec<(&RunResult, &TestScores)> = Vec::new();
    let mut diverged = Vec::new();
    let mut missing = Vec::new();
    let mut runs = 0;
    for &seed in &exp.seeds {
        match exp.run(&v.name, seed) {
            None => missing.push(seed),
            Some(r) => {
                runs += 1;
                match (&r.outcome.status, usable(r)) {
                    (RunStatus::Diverged { epoch }, _) => diverged.push(Divergence {
                        seed,
                        epoch: *epoch,
                    }),
                    (_, Some(t)) => completed.push((r, t)),
                    (_, None) => missing.push(seed),
                }
            }
        }
    }
    let stat = |f: &dyn Fn(&RunResult, &TestScores) -> f64| {
        SeedStat::of(completed.iter().map(|(r, t)| f(r, t)).collect())
    };
    let selected = |r: &RunResult, t: &TestScores| -> Option<EpochRecord> {
        r.outcome
            .epochs
            .iter()
            .find(|e| e.epoch == t.selected_epoch)
            .cloned()
    };
    let at_selected = |f: fn(&EpochRecord) -> f64| {
        move |r: &RunResult, t: &TestScores| selected(r, t).as_ref().map(f).unwrap_or(f64::NAN)
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
        completed_seeds: completed.iter().map(|(r, _)| r.seed).collect(),
        diverged,
        missing_seeds: missing,
        seeds: completed
            .iter()
            .map(|(r, t)| SeedProtocol {
                seed: r.seed,
                converged: r.outcome.converged,
                converged_epoch: r.outcome.converged_epoch,
                epochs_trained: r.outcome.epochs.len(),
                selected_epoch: t.selected_epoch,
                threshold: t.threshold,
                val_dice: t.val_dice,
            })
            .collect(),
        test: TEST_METRICS
            .iter()
            .map(|m| stat(&|_, t| t.mean(m.key)))
            .collect(),
        selected_epoch: stat(&|_, t| t.selected_epoch as f64),
        threshold: stat(&|_, t| t.threshold),
        val_dice: stat(&|_, t| t.val_dice),
        soft_dice: stat(&at_selected(|e| e.val_soft_dice)),
        soft_dice_gap: stat(&at_selected(|e| e.val_dice - e.val_soft_dice)),
        first_epoch_dice: stat(&|r, _| {
            r.outcome
                .epochs
                .first()
                .map(|e| e.val_dice)
                .unwrap_or(f64::NAN)
        }),
        epochs_to_90: stat(&|r, _| epochs_to_fraction_of_best(&r.outcome.epochs, 0.9)),
        zero_grad_fraction: stat(&|r, _| {
            stats::mean(
                &r.outcome
                    .epochs
                    .iter()
                    .map(|e| e.zero_grad_fraction)
                    .collect::<Vec<_>>(),
            )
        }),
        all_gradients_zero,
        seconds: stat(&|r, _| r.outcome.seconds),
    }
}

/// What a comparison is about: a metric's key, its label and its direction.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricInfo {
    pub key: String,
    pub label: String,
    pub higher_is_better: bool,
}

impl From<&TestMetric> for MetricInfo {
    fn from(m: &TestMetric) -> Self {
        MetricInfo {
            key: m.key.to_string(),
            label: m.label.to_string(),
            higher_is_better: true,
        }
    }
}

/// A variant (or model) against the baseline on one metric, the case as the unit, over the seeds where both
/// completed (one seed for a model trained elsewhere).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricComparison {
    pub variant: String,
    pub baseline: String,
    pub metric: MetricInfo,
    pub seeds: Vec<u64>,
    /// Mean over the test cases of the seed-averaged score.
    pub variant_mean: f64,
    pub baseline_mean: f64,
    /// Why there is no comparison (no seed with both runs completed, ...).
    pub result: std::result::Result<CaseComparison, String>,
}

/// The paired `scores[case][seed]` of a variant and the baseline on `metric`, over the seeds where both completed.
fn paired_scores(
    exp: &Experiment,
    variant: &str,
    metric: &str,
) -> Result<(Vec<u64>, Vec<Vec<f64>>, Vec<Vec<f64>>)> {
    let mut seeds = Vec::new();
    let (mut a, mut b): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (Vec::new(), Vec::new());
    for &seed in &exp.seeds {
        let (Some(tv), Some(tb)) = (
            exp.run(variant, seed).and_then(usable),
            exp.run(&exp.baseline, seed).and_then(usable),
        ) else {
            continue;
        };
        if tv.cases != tb.cases {
            bail!(
                "seed {seed}: variant '{variant}' was tested on other cases than the baseline '{}'; the comparison \
                 needs the same split",
                exp.baseline
            );
        }
        let (sv, sb) = (tv.metric(metric), tb.metric(metric));
        if sv.len() != tv.cases.len() || sb.len() != tb.cases.len() {
            bail!("seed {seed}: test scores of '{metric}' do not cover the test cases");
        }
        if seeds.is_empty() {
            a = vec![Vec::new(); sv.len()];
            b = vec![Vec::new(); sb.len()];
        } else if a.len() != sv.len() {
            bail!("seed {seed}: other test cases than in seed {}", seeds[0]);
        }
        for (i, (x, y)) in sv.iter().zip(sb).enumerate() {
            a[i].push(*x);
            b[i].push(*y);
        }
        seeds.push(seed);
    }
    Ok((seeds, a, b))
}

/// Paired scores of one variant: `(seeds, variant[case][seed], baseline[case][seed])`, or why there are none.
pub type PairedScores = std::result::Result<(Vec<u64>, Vec<Vec<f64>>, Vec<Vec<f64>>), String>;

/// One family: each variant against `baseline` on `metric`, Holm-adjusted across the variants that could be
/// compared. Shared by the trained compare and the compare of prediction folders.
pub fn compare_family(
    metric: &MetricInfo,
    baseline: &str,
    variants: Vec<(String, PairedScores)>,
) -> Vec<MetricComparison> {
    let case_mean =
        |m: &[Vec<f64>]| stats::mean(&m.iter().map(|c| stats::mean(c)).collect::<Vec<_>>());
    // Each comparison's bootstrap is independent of the others' (its own seeded streams): run them side by side.
    let mut family: Vec<MetricComparison> = variants
        .into_par_iter()
        .map(|(variant, paired)| {
            let (seeds, means, result) = match paired {
                Ok((seeds, a, b)) => {
                    let means = (case_mean(&a), case_mean(&b));
                    (
                        seeds,
                        means,
                        compare_by_case(&a, &b).map_err(|e| e.to_string()),
                    )
                }
                Err(why) => (Vec::new(), (f64::NAN, f64::NAN), Err(why)),
            };
            MetricComparison {
                variant,
                baseline: baseline.to_string(),
                metric: metric.clone(),
                seeds,
                variant_mean: means.0,
                baseline_mean: means.1,
                result,
            }
        })
        .collect();
    let mut tested: Vec<CaseComparison> = family
        .iter()
        .filter_map(|c| c.result.clone().ok())
        .collect();
    adjust_family(&mut tested);
    let mut adjusted = tested.into_iter();
    for c in family.iter_mut() {
        if c.result.is_ok() {
            c.result = Ok(adjusted
                .next()
                .expect("one adjusted comparison per tested one"));
        }
    }
    family
}

/// A variant's answer to the project's question, with the reason in words.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantAnswer {
    pub variant: String,
    pub answer: Answer,
    pub reason: String,
}

/// The numbers of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub variants: Vec<VariantSummary>,
    /// Per test metric (in [`TEST_METRICS`] order), one per non-baseline variant (in variant order).
    pub comparisons: Vec<MetricComparison>,
    /// One per non-baseline variant, in variant order.
    pub answers: Vec<VariantAnswer>,
}

impl Analysis {
    pub fn variant(&self, name: &str) -> Option<&VariantSummary> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn comparison(&self, variant: &str, metric: &str) -> Option<&MetricComparison> {
        self.comparisons
            .iter()
            .find(|c| c.variant == variant && c.metric.key == metric)
    }

    pub fn answer(&self, variant: &str) -> Option<&VariantAnswer> {
        self.answers.iter().find(|a| a.variant == variant)
    }
}

/// Why a variant's runs (or the baseline's) cannot support an answer: divergence, no convergence rule, or a seed that
/// did not converge within the budget.
fn training_caveats(exp: &Experiment, s: &VariantSummary, role: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in &s.diverged {
        out.push(format!(
            "{role} {} diverged in seed {} at epoch {}",
            s.name, d.seed, d.epoch
        ));
    }
    for p in &s.seeds {
        match p.converged {
            None => out.push(format!(
                "{role} {} seed {} trained a fixed {} epochs without a convergence rule, so whether it had \
                 converged is unknown",
                s.name, p.seed, p.epochs_trained
            )),
            Some(false) => out.push(format!(
                "{role} {} seed {} did not converge within its budget of {} epochs (its smoothed validation Dice was \
                 still rising)",
                s.name, p.seed, exp.epochs
            )),
            Some(true) => {}
        }
    }
    out
}

fn describe_comparison(c: &MetricComparison, cc: &CaseComparison) -> String {
    format!(
        "{} on {} test cases x {} seed{}: {} vs {} ({}), difference {} [{}, {}], Wilcoxon p = {}, Holm p = {}",
        c.metric.label,
        cc.n_cases,
        cc.n_seeds,
        if cc.n_seeds == 1 { "" } else { "s" },
        fmt3(c.variant_mean),
        fmt3(c.baseline_mean),
        c.baseline,
        signed3(cc.difference),
        signed3(cc.ci95[0]),
        signed3(cc.ci95[1]),
        fmt_p(cc.p_value),
        fmt_p(cc.p_holm)
    )
}

fn variant_answer(
    exp: &Experiment,
    variants: &[VariantSummary],
    c: &MetricComparison,
) -> VariantAnswer {
    let find = |n: &str| variants.iter().find(|v| v.name == n);
    let mut caveats = Vec::new();
    if let Some(b) = find(&exp.baseline) {
        caveats.extend(training_caveats(exp, b, "the baseline"));
    }
    if let Some(v) = find(&c.variant) {
        caveats.extend(training_caveats(exp, v, "the variant"));
    }
    answer_from(c, &caveats)
}

/// The answer of one comparison: `inconclusive` with the caveats when there are any (runs that cannot support an
/// answer) or when there is no comparison; `no evidence` below [`MIN_CASES`]; else better / worse / no evidence by
/// Holm-adjusted p and the interval, in the metric's direction.
pub fn answer_from(c: &MetricComparison, caveats: &[String]) -> VariantAnswer {
    let (answer, reason) = match &c.result {
        Err(why) => (Answer::Inconclusive, format!("not compared: {why}")),
        Ok(cc) => {
            let numbers = describe_comparison(c, cc);
            if !caveats.is_empty() {
                (
                    Answer::Inconclusive,
                    format!("{}; {numbers}", caveats.join("; ")),
                )
            } else if cc.n_cases < MIN_CASES {
                (
                    Answer::NoEvidence,
                    format!(
                        "{numbers}; only {} test cases, too few for any test to reach p < {ALPHA}",
                        cc.n_cases
                    ),
                )
            } else {
                let a = answer(cc, ALPHA, c.metric.higher_is_better);
                let hi = c.metric.higher_is_better;
                let why = match (a, hi) {
                    (Answer::Better, true) => "the interval lies above 0 and Holm p < 0.05",
                    (Answer::Worse, true) => "the interval lies below 0 and Holm p < 0.05",
                    (Answer::Better, false) => {
                        "the interval lies below 0 (lower is better) and Holm p < 0.05"
                    }
                    (Answer::Worse, false) => {
                        "the interval lies above 0 (lower is better) and Holm p < 0.05"
                    }
                    _ if cc.p_holm < ALPHA => "Holm p < 0.05 but the interval contains 0",
                    _ => "Holm p >= 0.05",
                };
                (a, format!("{numbers}: {why}"))
            }
        }
    };
    VariantAnswer {
        variant: c.variant.clone(),
        answer,
        reason,
    }
}

pub fn analyze(exp: &Experiment) -> Result<Analysis> {
    exp.validate()?;
    let variants: Vec<VariantSummary> = exp
        .variants
        .iter()
        .map(|v| summarize_variant(exp, v))
        .collect();
    let others: Vec<&str> = exp
        .variants
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| *n != exp.baseline)
        .collect();
    let mut comparisons = Vec::new();
    for metric in &TEST_METRICS {
        let mut inputs = Vec::new();
        for v in &others {
            let (seeds, a, b) = paired_scores(exp, v, metric.key)?;
            let paired = if seeds.is_empty() {
                Err(format!(
                    "no seed in which both {v} and {} completed",
                    exp.baseline
                ))
            } else {
                Ok((seeds, a, b))
            };
            inputs.push((v.to_string(), paired));
        }
        comparisons.extend(compare_family(
            &MetricInfo::from(metric),
            &exp.baseline,
            inputs,
        ));
    }
    let answers = comparisons
        .iter()
        .filter(|c| c.metric.key == PRIMARY_METRIC)
        .map(|c| variant_answer(exp, &variants, c))
        .collect();
    Ok(Analysis {
        variants,
        comparisons,
        answers,
    })
}

/// Three decimals, or "n/a" for a missing number.
pub fn fmt3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".to_string()
    }
}

/// A signed difference: "+0.012", "-0.010".
pub fn signed3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.3}")
    } else {
        "n/a".to_string()
    }
}

pub fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        "n/a".to_string()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}
