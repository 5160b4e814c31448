//! Paired comparison of a model against a baseline with the case as the statistical unit, shared by `compare` on
//! seglab-trained runs and on predictions of models trained anywhere.
//!
//! Scores are `scores[case][seed]` (one seed for a model trained elsewhere). Per case the difference
//! `variant - baseline` is averaged over the seeds, so a case counts once however many seeds ran:
//! - `difference`: the mean over cases of those per-case differences;
//! - `ci95`: a two-level percentile bootstrap of that mean: cases resampled with replacement, then within each drawn
//!   case its seeds resampled with replacement, [`BOOTSTRAP_RESAMPLES`] times, from two [`SplitMix64`] streams (cases,
//!   seeds) so that the case draws do not depend on the number of seeds: seeds that agree add no width and no
//!   false precision;
//! - `p_value`: the Wilcoxon signed-rank test over the per-case differences ([`crate::stats::wilcoxon_signed_rank`]);
//!   `p_holm`: Holm's step-down adjustment across the variants compared with one baseline on one metric;
//! - `seed_differences`: the seed-level view, per seed the mean difference over the cases.
//!
//! The answer for a metric where higher is better: `better` when `p_holm < alpha` and the interval lies above 0,
//! `worse` when `p_holm < alpha` and it lies below 0, else `no evidence` (`inconclusive` is the caller's, for runs that
//! did not converge). For a metric where lower is better (distances) the directions swap.
use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;
use crate::stats::{mean, quantile_sorted, wilcoxon_signed_rank, Wilcoxon};

pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
pub const BOOTSTRAP_SEED: u64 = 0x5E61_CA5E;

/// One variant against the baseline on one metric, the case as the unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseComparison {
    pub n_cases: usize,
    pub n_seeds: usize,
    /// Mean over cases of the per-case (seed-averaged) `variant - baseline`.
    pub difference: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    /// Holm-adjusted p-value; equal to `p_value` until [`holm`] adjusts a family.
    pub p_holm: f64,
    /// Per case, in the input's order.
    pub case_differences: Vec<f64>,
    /// Per seed, the mean difference over the cases.
    pub seed_differences: Vec<f64>,
    pub wilcoxon: Wilcoxon,
}

/// Why scores cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComparisonError {
    #[error("no cases to compare")]
    NoCases,
    #[error("case {case}: {variant} seed(s) vs {baseline} for the baseline; every case needs the same seeds")]
    SeedMismatch {
        case: usize,
        variant: usize,
        baseline: usize,
    },
    #[error("{cases} cases for the variant vs {baseline_cases} for the baseline")]
    CaseMismatch { cases: usize, baseline_cases: usize },
    #[error("case {case} seed {seed}: a non-finite score ({value})")]
    NotFinite {
        case: usize,
        seed: usize,
        value: f64,
    },
}

/// Compares `variant[case][seed]` with `baseline[case][seed]` (same cases, same seeds, finite scores).
pub fn compare_by_case(
    variant: &[Vec<f64>],
    baseline: &[Vec<f64>],
) -> Result<CaseComparison, ComparisonError> {
    if variant.len() != baseline.len() {
        return Err(ComparisonError::CaseMismatch {
            cases: variant.len(),
            baseline_cases: baseline.len(),
        });
    }
    if variant.is_empty() {
        return Err(ComparisonError::NoCases);
    }
    let n_seeds = baseline[0].len();
    let mut diffs: Vec<Vec<f64>> = Vec::with_capacity(variant.len());
    for (case, (v, b)) in variant.iter().zip(baseline).enumerate() {
        if v.len() != b.len() || b.len() != n_seeds || n_seeds == 0 {
            return Err(ComparisonError::SeedMismatch {
                case,
                variant: v.len(),
                baseline: b.len(),
            });
        }
        for (seed, &value) in v.iter().chain(b).enumerate() {
            if !value.is_finite() {
                return Err(ComparisonError::NotFinite {
                    case,
                    seed: seed % n_seeds,
                    value,
                });
            }
        }
        diffs.push(v.iter().zip(b).map(|(x, y)| x - y).collect());
    }
    let case_differences: Vec<f64> = diffs.iter().map(|d| mean(d)).collect();
    let seed_differences: Vec<f64> = (0..n_seeds)
        .map(|s| mean(&diffs.iter().map(|d| d[s]).collect::<Vec<_>>()))
        .collect();
    let wilcoxon = wilcoxon_signed_rank(&case_differences);
    Ok(CaseComparison {
        n_cases: diffs.len(),
        n_seeds,
        difference: mean(&case_differences),
        ci95: two_level_bootstrap_ci(&diffs, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
        p_value: wilcoxon.p_value,
        p_holm: wilcoxon.p_value,
        case_differences,
        seed_differences,
        wilcoxon,
    })
}

/// Percentile interval of the mean over cases of `diffs[case][seed]` averaged over seeds, resampling cases and then
/// seeds within each drawn case (module docs).
pub fn two_level_bootstrap_ci(
    diffs: &[Vec<f64>],
    level: f64,
    resamples: usize,
    seed: u64,
) -> [f64; 2] {
    if diffs.is_empty() || resamples == 0 {
        return [f64::NAN; 2];
    }
    let mut cases = SplitMix64::new(seed);
    // A second stream, decorrelated from the first, for the seeds within a case.
    let mut seeds = SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15);
    let n = diffs.len();
    let k0 = diffs[0].len();
    let mut means: Vec<f64> = if diffs.iter().all(|d| d.len() == k0) {
        // Every case has k0 seeds, so resample r starts at draw r n of the case stream and r n k0 of the seed
        // stream: LANES resamples run side by side (the sum of one waits on its previous addition), each drawing
        // and adding exactly as the loop below does, so the means are the same numbers.
        use crate::stats::LANES;
        let mut means = Vec::with_capacity(resamples);
        for r0 in (0..resamples).step_by(LANES) {
            let lanes = LANES.min(resamples - r0);
            let at = |l: usize| ((r0 + l) * n) as u64;
            let mut cs: [SplitMix64; LANES] = std::array::from_fn(|l| cases.skipped(at(l)));
            let mut ss: [SplitMix64; LANES] =
                std::array::from_fn(|l| seeds.skipped(at(l) * k0 as u64));
            let mut totals = [0.0f64; LANES];
            for _ in 0..n {
                for l in 0..lanes {
                    let d = &diffs[cs[l].below(n)];
                    totals[l] += if k0 == 1 {
                        // `below(1)` is always 0: the lane's seed stream need not be drawn (no other lane reads it).
                        std::iter::once(d[0]).sum::<f64>() / 1.0
                    } else {
                        let s = &mut ss[l];
                        (0..k0).map(|_| d[s.below(k0)]).sum::<f64>() / k0 as f64
                    };
                }
            }
            means.extend(totals[..lanes].iter().map(|t| t / n as f64));
        }
        means
    } else {
        resample_means(diffs, resamples, &mut cases, &mut seeds)
    };
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    [
        quantile_sorted(&means, alpha),
        quantile_sorted(&means, 1.0 - alpha),
    ]
}

/// The bootstrap's resample means one after the other, drawing from `cases` and `seeds` in turn.
fn resample_means(
    diffs: &[Vec<f64>],
    resamples: usize,
    cases: &mut SplitMix64,
    seeds: &mut SplitMix64,
) -> Vec<f64> {
    let n = diffs.len();
    (0..resamples)
        .map(|_| {
            let mut total = 0.0;
            for _ in 0..n {
                let d = &diffs[cases.below(n)];
                let k = d.len();
                total += (0..k).map(|_| d[seeds.below(k)]).sum::<f64>() / k as f64;
            }
            total / n as f64
        })
        .collect()
}

/// Holm's step-down adjusted p-values, in the input's order: the i-th smallest p times `(m - i)` (i from 0), made
/// non-decreasing in that order and capped at 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (i, &k) in order.iter().enumerate() {
        running = running.max(((m - i) as f64 * p[k]).min(1.0));
        adjusted[k] = running;
    }
    adjusted
}

/// Holm-adjusts a family of comparisons (the variants against one baseline on one metric) in place.
pub fn adjust_family(family: &mut [CaseComparison]) {
    let p: Vec<f64> = family.iter().map(|c| c.p_value).collect();
    for (c, q) in family.iter_mut().zip(holm(&p)) {
        c.p_holm = q;
    }
}

/// A variant's answer on one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Better,
    Worse,
    #[serde(rename = "no evidence")]
    NoEvidence,
    Inconclusive,
}

/// The answer of a Holm-adjusted comparison at level `alpha` (module docs).
pub fn answer(c: &CaseComparison, alpha: f64, higher_is_better: bool) -> Answer {
    // NaN p-values (no test possible) are no evidence either.
    if c.p_holm.is_nan() || c.p_holm >= alpha {
        return Answer::NoEvidence;
    }
    let [lo, hi] = c.ci95;
    let (up, down) = (lo > 0.0, hi < 0.0);
    match (up, down, higher_is_better) {
        (true, _, true) | (_, true, false) => Answer::Better,
        (_, true, true) | (true, _, false) => Answer::Worse,
        _ => Answer::NoEvidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resamples side by side give the interval of the plain loop, bit for bit, with one and with three seeds
    /// per case and a resample count that is not a multiple of the lanes.
    #[test]
    fn lanes_give_the_plain_loops_interval() {
        let mut rng = SplitMix64::new(5);
        for k in [1usize, 3] {
            let diffs: Vec<Vec<f64>> = (0..37)
                .map(|_| (0..k).map(|_| rng.uniform() - 0.4).collect())
                .collect();
            for resamples in [1usize, 999, 1000] {
                let got = two_level_bootstrap_ci(&diffs, 0.95, resamples, 77);
                let mut plain = resample_means(
                    &diffs,
                    resamples,
                    &mut SplitMix64::new(77),
                    &mut SplitMix64::new(77 ^ 0x9E37_79B9_7F4A_7C15),
                );
                plain.sort_by(f64::total_cmp);
                let alpha = (1.0 - 0.95) / 2.0;
                let want = [
                    quantile_sorted(&plain, alpha),
                    quantile_sorted(&plain, 1.0 - alpha),
                ];
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "k {k}, {resamples}"
                );
            }
        }
    }
}
