//! Summaries over cases (mean, std, median, 95% CI, n) and the threshold sweep.
//!
//! - `std` is the sample standard deviation (n - 1 in the denominator); null when n < 2.
//! - `median` averages the two middle values for even n.
//! - `ci95` is a percentile bootstrap interval of the mean: 2000 resamples with replacement drawn by SplitMix64
//!   seeded with [`BOOTSTRAP_SEED`] (so results are reproducible), the 2.5th and 97.5th percentiles of the
//!   resampled means with linear interpolation (NumPy's default); null when n < 2.
//! - Only finite values count; `n` says how many. Cases left out by the `skip` empty policy are not counted.
use crate::rng::SplitMix64;
use crate::stats::{bootstrap_draws, bootstrap_means, bootstrap_means_from, quantile_sorted};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::confusion::Confusion;
use crate::evaluate::{CaseResult, Emptiness, EmptyPolicy, Metrics};
use crate::mask::{Mask, ProbMap};

pub const BOOTSTRAP_SEED: u64 = 0x5E61_AB00_2026;
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Statistics of one metric over cases; JSON `summary.<metric>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub median: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    pub n: usize,
}

/// Statistics of the finite values in `values`.
pub fn stat(values: &[f64]) -> Stat {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return Stat {
            mean: None,
            std: None,
            median: None,
            ci95: None,
            n,
        };
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / n as f64;
    let median = quantile_sorted(&v, 50.0 / 100.0);
    if n < 2 {
        return Stat {
            mean: Some(mean),
            std: None,
            median: Some(median),
            ci95: None,
            n,
        };
    }
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let means = summary_bootstrap_means(&v);
    let ci = [
        quantile_sorted(&means, 2.5 / 100.0),
        quantile_sorted(&means, 97.5 / 100.0),
    ];
    Stat {
        mean: Some(mean),
        std: Some(std),
        median: Some(median),
        ci95: Some(ci),
        n,
    }
}

/// The summary's bootstrap means of `v`. A summary takes ~40 metrics over mostly the same number of cases, which all
/// resample with the same indices: the last count's indices are kept per thread and drawn once (up to 2^21 of them,
/// 8 MB; more cases draw as they go).
fn summary_bootstrap_means(v: &[f64]) -> Vec<f64> {
    use std::cell::RefCell;
    use std::rc::Rc;
    thread_local! {
        static DRAWS: RefCell<Option<(usize, Rc<Vec<u32>>)>> = const { RefCell::new(None) };
    }
    let n = v.len();
    if n * BOOTSTRAP_RESAMPLES > 1 << 21 {
        return bootstrap_means(
            v,
            BOOTSTRAP_RESAMPLES,
            BOOTSTRAP_SEED,
            SplitMix64::below_scaled,
        );
    }
    let draws = DRAWS.with_borrow_mut(|cached| match cached {
        Some((m, d)) if *m == n => d.clone(),
        _ => {
            let d = Rc::new(bootstrap_draws(
                n,
                BOOTSTRAP_RESAMPLES,
                BOOTSTRAP_SEED,
                SplitMix64::below_scaled,
            ));
            *cached = Some((n, d.clone()));
            d
        }
    });
    bootstrap_means_from(v, &draws)
}

/// How many cases had empty masks and what the policy did; JSON `summary.empty_masks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmptyCounts {
    pub policy: EmptyPolicy,
    pub both_empty: usize,
    pub empty_prediction: usize,
    pub empty_ground_truth: usize,
    /// Cases where the policy set at least one value.
    pub cases_with_values_set_by_policy: usize,
    /// Cases left out of the statistics (`skip`).
    pub cases_skipped: usize,
}

/// The JSON `summary`: one [`Stat`] per metric (keys as in [`Metrics::NAMES`]) plus `empty_masks`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub metrics: BTreeMap<String, Stat>,
    pub empty_masks: EmptyCounts,
    /// With lesion-wise (BraTS) scores: per-case scores averaged over cases, as the challenge ranks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lesionwise: Option<LesionWiseSummary>,
    /// With instance matching: per-case qualities over cases, and the counts summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceSummary>,
}

/// JSON `summary.lesionwise`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LesionWiseSummary {
    pub dice: Stat,
    pub hd95: Stat,
    /// Summed over cases.
    pub tp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub fp: usize,
}

/// JSON `summary.instances`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceSummary {
    pub pq: Stat,
    pub sq: Stat,
    pub rq: Stat,
    pub sq_dice: Stat,
    pub sq_hd95: Stat,
    pub sq_assd: Stat,
    /// Summed over cases.
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

pub fn summarize(cases: &[CaseResult], policy: EmptyPolicy) -> Summary {
    let included: Vec<&CaseResult> = cases.iter().filter(|c| c.status.in_summary).collect();
    let metrics = Metrics::NAMES
        .iter()
        .map(|&name| {
            let values: Vec<f64> = included
                .iter()
                .filter_map(|c| c.metrics.get(name).flatten())
                .collect();
            (name.to_string(), stat(&values))
        })
        .collect();
    let count = |e: Emptiness| cases.iter().filter(|c| c.status.empty == e).count();
    let lw: Vec<_> = included
        .iter()
        .filter_map(|c| c.lesionwise.as_ref())
        .collect();
    let lesionwise = (!lw.is_empty()).then(|| LesionWiseSummary {
        dice: stat(&lw.iter().map(|l| l.dice).collect::<Vec<_>>()),
        hd95: stat(&lw.iter().map(|l| l.hd95).collect::<Vec<_>>()),
        tp: lw.iter().map(|l| l.tp).sum(),
        fn_: lw.iter().map(|l| l.fn_).sum(),
        fp: lw.iter().map(|l| l.fp).sum(),
    });
    let inst: Vec<_> = included
        .iter()
        .filter_map(|c| c.instances.as_ref())
        .collect();
    let of = |f: fn(&crate::instances::Instances) -> Option<f64>| {
        stat(&inst.iter().filter_map(|i| f(i)).collect::<Vec<_>>())
    };
    let instances = (!inst.is_empty()).then(|| InstanceSummary {
        pq: of(|i| i.pq),
        sq: of(|i| i.sq),
        rq: of(|i| i.rq),
        sq_dice: of(|i| i.sq_dice),
        sq_hd95: of(|i| i.sq_hd95),
        sq_assd: of(|i| i.sq_assd),
        tp: inst.iter().map(|i| i.tp).sum(),
        fp: inst.iter().map(|i| i.fp).sum(),
        fn_: inst.iter().map(|i| i.fn_).sum(),
    });
    Summary {
        lesionwise,
        instances,
        metrics,
        empty_masks: EmptyCounts {
            policy,
            both_empty: count(Emptiness::Both),
            empty_prediction: count(Emptiness::Prediction),
            empty_ground_truth: count(Emptiness::GroundTruth),
            cases_with_values_set_by_policy: cases
                .iter()
                .filter(|c| !c.status.policy.is_empty())
                .count(),
            cases_skipped: cases.len() - included.len(),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Threshold sweep

/// Thresholds `0.05, 0.05 + step, ...` up to 0.95 (inclusive), rounded to 1e-6 so that 0.05 + k * 0.05 prints
/// and compares as the decimal the user expects.
pub fn sweep_thresholds(step: f64) -> Result<Vec<f32>, String> {
    if !(step > 0.0 && step <= 0.9) {
        return Err(format!("sweep step {step} must be in (0, 0.9]"));
    }
    let mut t = Vec::new();
    let mut k = 0usize;
    loop {
        let v = ((0.05 + k as f64 * step) * 1e6).round() / 1e6;
        if v > 0.95 + 1e-9 {
            break;
        }
        t.push(v as f32);
        k += 1;
    }
    Ok(t)
}

/// Confusion counts of one case at each threshold (ascending), with the rule `p >= t`.
pub fn sweep_counts(prob: &ProbMap, gt: &Mask, thresholds: &[f32]) -> Vec<Confusion> {
    assert_eq!(prob.shape(), gt.shape());
    prob_stats(prob.data(), gt.data(), thresholds, 1).sweep
}

/// What one pass over a probability map gives: the sweep's confusion counts, a histogram of the probabilities
/// inside and outside the ground truth (`bins` equal bins on [0, 1]) and the sums of soft Dice.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbStats {
    /// Per threshold (ascending), the counts with the rule `p >= t`.
    pub sweep: Vec<Confusion>,
    pub hist_lesion: Vec<u64>,
    pub hist_background: Vec<u64>,
    /// `sum(p t)`, `sum(p)`, `sum(t)`.
    pub soft: [f64; 3],
    /// `sum(p (1 - t))`: the probability mass on background voxels.
    pub background_sum: f64,
    /// Some value strictly between 0 and 1.
    pub probabilistic: bool,
}

impl ProbStats {
    /// `2 sum(p t) / (sum p + sum t)`, 1 when both sums are 0.
    pub fn soft_dice(&self) -> f64 {
        let [spt, sp, st] = self.soft;
        if sp + st > 0.0 {
            2.0 * spt / (sp + st)
        } else {
            1.0
        }
    }
}

/// One pass over `prob` and `gt` (same length): [`ProbStats`].
///
/// The float sums run in one sequential pass in the voxels' order (their rounding is part of the reported soft Dice).
/// The counts are integers and order-free: each voxel's (thresholds reached, histogram bin) pair is counted in one of
/// four tables in turn, so that runs of equal probabilities (the background of a mask) do not wait on the previous
/// increment of the same counter.
pub fn prob_stats(prob: &[f32], gt: &[bool], thresholds: &[f32], bins: usize) -> ProbStats {
    assert_eq!(prob.len(), gt.len());
    let k = thresholds.len();
    let bins = bins.max(1);
    assert!(bins < 1 << 24, "{bins} histogram bins");
    let (mut spt, mut sp, mut sb) = (0.0f64, 0.0f64, 0.0f64);
    let mut st = 0u64;
    let mut probabilistic = false;
    // pairs[g][b * bins + bin]: voxels (g: in the ground truth) reaching exactly the first b thresholds, in
    // histogram bin `bin`.
    let width = (k + 1) * bins;
    let mut tables = vec![0u32; 4 * 2 * width];
    let mut totals = vec![0u64; 2 * width];
    let last_bin = (bins - 1) as u32;
    // u32 counters, added into the u64 totals after each block: no table gets more than a quarter of a block.
    const BLOCK: usize = 1 << 30;
    // The float sums first, one dependent chain each (about a nanosecond per voxel).
    for (&p, &g) in prob.iter().zip(gt) {
        let p64 = p as f64;
        sp += p64;
        if g {
            spt += p64;
        } else {
            sb += p64;
        }
        st += u64::from(g);
        probabilistic |= p > 0.0 && p < 1.0;
    }
    // Then per chunk each voxel's key `g * width + b * bins + bin` into a buffer, and the increments in a loop of
    // their own (a loop that computes and increments together runs at a third of the speed: its loads wait on the
    // stores before them).
    const CHUNK: usize = 4096;
    let mut keys = vec![0u32; CHUNK];
    let lut = ThresholdLut::new(thresholds);
    for (pb, gb) in prob.chunks(BLOCK).zip(gt.chunks(BLOCK)) {
        for (pc, gc) in pb.chunks(CHUNK).zip(gb.chunks(CHUNK)) {
            let keys = &mut keys[..pc.len()];
            for ((k, &p), &g) in keys.iter_mut().zip(pc).zip(gc) {
                *k = truncate_clamped(p * bins as f32, last_bin) + u32::from(g) * width as u32;
            }
            match &lut {
                Some(lut) => {
                    for (k, &p) in keys.iter_mut().zip(pc) {
                        *k += lut.reached(p) * bins as u32;
                    }
                }
                // Thresholds closer than the table's buckets: threshold by threshold over the whole chunk (loops the
                // compiler vectorises).
                None => {
                    for &t in thresholds {
                        for (k, &p) in keys.iter_mut().zip(pc) {
                            *k += u32::from(crate::mask::binarize(p, t)) * bins as u32;
                        }
                    }
                }
            }
            let (tables, rest) = tables.split_at_mut(3 * 2 * width);
            let (t0, t12) = tables.split_at_mut(2 * width);
            let (t1, t2) = t12.split_at_mut(2 * width);
            let mut quads = keys.chunks_exact(4);
            for q in &mut quads {
                t0[q[0] as usize] += 1;
                t1[q[1] as usize] += 1;
                t2[q[2] as usize] += 1;
                rest[q[3] as usize] += 1;
            }
            for &k in quads.remainder() {
                t0[k as usize] += 1;
            }
        }
        for table in tables.chunks_mut(2 * width) {
            for (t, v) in totals.iter_mut().zip(table.iter_mut()) {
                *t += u64::from(std::mem::take(v));
            }
        }
    }
    let (bg_pairs, gt_pairs) = totals.split_at(width);
    let marginal_b =
        |pairs: &[u64]| -> Vec<u64> { pairs.chunks(bins).map(|row| row.iter().sum()).collect() };
    let marginal_bin = |pairs: &[u64]| -> Vec<u64> {
        (0..bins)
            .map(|bin| pairs.iter().skip(bin).step_by(bins).sum())
            .collect()
    };
    let (hist_bg, hist_gt) = (marginal_b(bg_pairs), marginal_b(gt_pairs));
    let (hb, hl) = (marginal_bin(bg_pairs), marginal_bin(gt_pairs));
    let (total_gt, total_bg): (u64, u64) = (hist_gt.iter().sum(), hist_bg.iter().sum());
    let (mut below_gt, mut below_bg) = (0u64, 0u64);
    let sweep = (0..k)
        .map(|i| {
            // Voxels with b <= i are below threshold i.
            below_gt += hist_gt[i];
            below_bg += hist_bg[i];
            Confusion {
                tp: total_gt - below_gt,
                fn_: below_gt,
                fp: total_bg - below_bg,
                tn: below_bg,
            }
        })
        .collect();
    ProbStats {
        sweep,
        hist_lesion: hl,
        hist_background: hb,
        soft: [spt, sp, st as f64],
        background_sum: sb,
        probabilistic,
    }
}

/// How many thresholds (ascending) a probability reaches under `p >= t`, from a table instead of one comparison per
/// threshold. `p * 1024` is exact in f32 (a power of two), so bucket `u = floor(p * 1024)` holds exactly the
/// probabilities in `[u / 1024, (u + 1) / 1024)`; bucket 1024 holds every `p >= 1` and bucket 0 everything below
/// 1/1024 (negative values and NaN too, which reach no positive threshold). Every probability of a bucket reaches the
/// thresholds at or below its low end, and none at or above its high end; at most one threshold lies strictly inside,
/// and is compared (NaN stands for none). `None` when the thresholds do not allow this (two inside one bucket, or one not above 0).
struct ThresholdLut {
    at_low_end: Vec<u32>,
    inside: Vec<f32>,
}

impl ThresholdLut {
    const BUCKETS: usize = 1024;

    fn new(thresholds: &[f32]) -> Option<Self> {
        let m = Self::BUCKETS;
        if thresholds.iter().any(|t| !(*t > 0.0)) || !thresholds.is_sorted() {
            return None;
        }
        // Per bucket, the thresholds at its low end (reached from that bucket on) and the one strictly inside (NaN:
        // none; no probability reaches NaN, `p >= NaN` being false for p = +inf too), each threshold placed by the
        // same bucket rule as the probabilities: one pass over the thresholds, then a running count.
        let mut starts_at = vec![0u32; m + 1];
        let mut inside = vec![f32::NAN; m + 1];
        for &t in thresholds {
            let u = Self::bucket(t);
            if t == u as f32 / m as f32 {
                starts_at[u] += 1;
            } else if inside[u].is_nan() {
                inside[u] = t;
                if u < m {
                    starts_at[u + 1] += 1;
                }
            } else {
                return None;
            }
        }
        let at_low_end = starts_at
            .iter()
            .scan(0u32, |reached, &n| {
                *reached += n;
                Some(*reached)
            })
            .collect();
        Some(ThresholdLut { at_low_end, inside })
    }

    #[inline(always)]
    fn bucket(p: f32) -> usize {
        truncate_clamped(p * Self::BUCKETS as f32, Self::BUCKETS as u32) as usize
    }

    #[inline(always)]
    fn reached(&self, p: f32) -> u32 {
        let u = Self::bucket(p);
        self.at_low_end[u] + u32::from(crate::mask::binarize(p, self.inside[u]))
    }
}

/// `(x as i32).clamp(0, max)` for `max < 2^24`, without branches: noisy probabilities near 0 made the clamp's
/// branches mispredict (a third of `prob_stats`' time). NaN gives 0, as `as i32` does.
#[inline(always)]
fn truncate_clamped(x: f32, max: u32) -> u32 {
    // `f32::max` returns the other operand when one is NaN, so the value is a finite float in [0, max] here.
    let v = x.max(0.0).min(max as f32);
    // SAFETY: `v` is finite and in [0, max], and max (< 2^24) fits u32 exactly.
    unsafe { v.to_int_unchecked::<u32>() }
}

/// One threshold of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub threshold: f32,
    /// Means over cases of the per-case values (empty policy applied as for the case metrics).
    pub mean_dice: Option<f64>,
    pub mean_precision: Option<f64>,
    pub mean_recall: Option<f64>,
    /// Pooled over all cases' voxels: the precision-recall curve.
    pub pooled_precision: Option<f64>,
    pub pooled_recall: Option<f64>,
}

/// JSON `sweep`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub points: Vec<SweepPoint>,
    /// Threshold with the highest mean Dice (the lowest such threshold on ties).
    pub best_threshold: Option<f32>,
    pub best_mean_dice: Option<f64>,
    /// Area under the pooled precision-recall points, trapezoidal rule in recall order, over the swept thresholds
    /// only (no extrapolation to recall 0 or 1).
    pub pr_auc: Option<f64>,
}

/// A score from confusion counts (`None` when undefined), settled by the empty-mask policy like the case metrics:
/// `both_empty` says whether prediction and ground truth are both empty.
pub fn settle(value: Option<f64>, both_empty: bool, policy: EmptyPolicy) -> Option<f64> {
    match (value, policy) {
        (Some(v), _) => Some(v),
        (None, EmptyPolicy::Default) => Some(if both_empty { 1.0 } else { 0.0 }),
        (None, EmptyPolicy::Worst) => Some(0.0),
        (None, _) => None,
    }
}

/// Sweep summary over cases; `per_case[i][k]` are case i's counts at `thresholds[k]`.
pub fn sweep_summary(
    per_case: &[Vec<Confusion>],
    thresholds: &[f32],
    policy: EmptyPolicy,
) -> SweepResult {
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let points: Vec<SweepPoint> = thresholds
        .iter()
        .enumerate()
        .map(|(k, &threshold)| {
            let (mut dice, mut precision, mut recall) = (Vec::new(), Vec::new(), Vec::new());
            let mut pooled = Confusion::default();
            for case in per_case {
                let c = case[k];
                pooled.merge(&c);
                let both_empty = c.pred_count() == 0 && c.gt_count() == 0;
                if policy == EmptyPolicy::Skip && (c.pred_count() == 0 || c.gt_count() == 0) {
                    continue;
                }
                dice.extend(settle(c.dice(), both_empty, policy));
                precision.extend(settle(c.precision(), both_empty, policy));
                recall.extend(settle(c.recall(), both_empty, policy));
            }
            SweepPoint {
                threshold,
                mean_dice: mean(dice),
                mean_precision: mean(precision),
                mean_recall: mean(recall),
                pooled_precision: pooled.precision(),
                pooled_recall: pooled.recall(),
            }
        })
        .collect();
    let mut best: Option<(f32, f64)> = None;
    for p in &points {
        if let Some(d) = p.mean_dice {
            if best.is_none_or(|(_, b)| d > b) {
                best = Some((p.threshold, d));
            }
        }
    }
    let mut pr: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((p.pooled_recall?, p.pooled_precision?)))
        .collect();
    pr.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pr_auc = (pr.len() >= 2).then(|| {
        pr.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum::<f64>()
    });
    SweepResult {
        points,
        best_threshold: best.map(|b| b.0),
        best_mean_dice: best.map(|b| b.1),
        pr_auc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guessed_threshold_count_is_the_partition_point() {
        let grids = [
            sweep_thresholds(0.05).unwrap(),
            sweep_thresholds(0.1).unwrap(),
            vec![0.5],
            vec![0.1, 0.2, 0.7, 0.71, 0.99],
            crate::pooled::sweep_thresholds(),
            // Inside one table bucket: counted threshold by threshold instead.
            vec![0.3, 0.3001, 0.6],
            vec![1.0, 1.25],
        ];
        // Which grids take the table: both paths are checked below.
        let tabled: Vec<bool> = grids
            .iter()
            .map(|t| ThresholdLut::new(t).is_some())
            .collect();
        assert_eq!(tabled, [true, true, true, true, true, false, true]);
        let mut rng = crate::rng::SplitMix64::new(3);
        for t in &grids {
            let mut probes: Vec<f32> = t.clone();
            probes.extend(t.iter().map(|v| f32::from_bits(v.to_bits() - 1)));
            probes.extend([
                0.0,
                1.0,
                0.999_999,
                1e-9,
                -0.25,
                1.5,
                f32::NAN,
                f32::INFINITY,
            ]);
            // The lookup table's bucket edges and their neighbours.
            for u in 0..=1025u32 {
                let edge = u as f32 / 1024.0;
                probes.extend([edge, edge.next_down(), edge.next_up()]);
            }
            probes.extend((0..2000).map(|_| rng.uniform() as f32));
            let gt: Vec<bool> = (0..probes.len()).map(|i| i % 3 == 0).collect();
            let fast = prob_stats(&probes, &gt, t, 20);
            // The reference: one binary search per voxel.
            let mut slow = vec![Confusion::default(); t.len()];
            for (&p, &g) in probes.iter().zip(&gt) {
                let b = t.partition_point(|&x| crate::mask::binarize(p, x));
                for (i, c) in slow.iter_mut().enumerate() {
                    match (i < b, g) {
                        (true, true) => c.tp += 1,
                        (true, false) => c.fp += 1,
                        (false, true) => c.fn_ += 1,
                        (false, false) => c.tn += 1,
                    }
                }
            }
            assert_eq!(fast.sweep, slow, "{t:?}");
            assert_eq!(
                fast.hist_lesion.iter().sum::<u64>(),
                gt.iter().filter(|g| **g).count() as u64
            );
        }
    }

    /// The statistics equal a plain per-voxel loop, histogram and float sums bit for bit, on noisy probabilities with
    /// long runs of equal values, for several threshold lists and bin counts.
    #[test]
    fn prob_stats_equal_a_plain_loop() {
        let mut rng = crate::rng::SplitMix64::new(9);
        let probes: Vec<f32> = (0..50_000)
            .map(|i| match i % 7 {
                0..=2 => 0.1,
                3 => 1.0,
                4 => 0.0,
                _ => rng.uniform() as f32,
            })
            .collect();
        let gt: Vec<bool> = (0..probes.len()).map(|i| (i / 50) % 3 == 0).collect();
        for (t, bins) in [
            (sweep_thresholds(0.05).unwrap(), 20),
            ((0..200).map(|i| i as f32 / 200.0).collect::<Vec<f32>>(), 7),
            (vec![0.3, 0.3001, 0.6], 3),
            (vec![0.5], 1),
        ] {
            let got = prob_stats(&probes, &gt, &t, bins);
            let (mut hl, mut hb) = (vec![0u64; bins], vec![0u64; bins]);
            let (mut spt, mut sp, mut sb, mut st) = (0.0f64, 0.0f64, 0.0f64, 0u64);
            let mut sweep = vec![Confusion::default(); t.len()];
            for (&p, &g) in probes.iter().zip(&gt) {
                let bin = ((p * bins as f32) as usize).min(bins - 1);
                sp += p as f64;
                if g {
                    hl[bin] += 1;
                    spt += p as f64;
                    st += 1;
                } else {
                    hb[bin] += 1;
                    sb += p as f64;
                }
                for (c, &th) in sweep.iter_mut().zip(&t) {
                    c.merge(&Confusion::from_probs(&[p], &[g], th));
                }
            }
            assert_eq!(got.sweep, sweep, "{} thresholds", t.len());
            assert_eq!((got.hist_lesion, got.hist_background), (hl, hb));
            assert_eq!(
                got.soft.map(f64::to_bits),
                [spt, sp, st as f64].map(f64::to_bits)
            );
            assert_eq!(got.background_sum.to_bits(), sb.to_bits());
            assert!(got.probabilistic);
        }
    }

    /// The summary's interval from kept draws is the one of drawing as it goes, bit for bit: for counts that repeat
    /// (kept), that change between calls, and beyond what is kept.
    #[test]
    fn kept_bootstrap_draws_give_the_same_interval() {
        let mut rng = crate::rng::SplitMix64::new(5);
        for n in [2usize, 57, 57, 3, 57, 1100] {
            let mut v: Vec<f64> = (0..n).map(|_| rng.uniform() * 10.0).collect();
            let got = stat(&v).ci95.unwrap();
            v.sort_by(f64::total_cmp);
            let means = bootstrap_means(
                &v,
                BOOTSTRAP_RESAMPLES,
                BOOTSTRAP_SEED,
                SplitMix64::below_scaled,
            );
            let want = [
                quantile_sorted(&means, 0.025),
                quantile_sorted(&means, 0.975),
            ];
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "n {n}");
        }
    }

    #[test]
    fn stats_of_known_values() {
        let s = stat(&[1.0, 2.0, 3.0, 4.0, f64::NAN]);
        assert_eq!(s.n, 4);
        assert_eq!(s.mean, Some(2.5));
        assert_eq!(s.median, Some(2.5));
        assert!((s.std.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let [lo, hi] = s.ci95.unwrap();
        assert!(lo < 2.5 && hi > 2.5 && lo >= 1.0 && hi <= 4.0, "{lo} {hi}");
        // Reproducible: same seed, same interval.
        assert_eq!(stat(&[1.0, 2.0, 3.0, 4.0]).ci95, s.ci95);
        let one = stat(&[7.0]);
        assert_eq!(
            (one.mean, one.std, one.ci95, one.n),
            (Some(7.0), None, None, 1)
        );
        assert_eq!(stat(&[]).n, 0);
    }

    #[test]
    fn thresholds_are_decimal() {
        let t = sweep_thresholds(0.05).unwrap();
        assert_eq!(t.len(), 19);
        assert_eq!((t[0], t[2], t[18]), (0.05, 0.15, 0.95));
        assert_eq!(sweep_thresholds(0.1).unwrap().len(), 10);
        assert!(sweep_thresholds(0.0).is_err());
    }

    #[test]
    fn sweep_counts_equal_direct_binarisation() {
        let probs: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let gt = Mask::from_vec(vec![10, 20], (0..200).map(|i| i % 3 == 0).collect());
        let p = ProbMap::new(vec![10, 20], vec![1.0, 1.0], probs.clone());
        let t = sweep_thresholds(0.05).unwrap();
        let counts = sweep_counts(&p, &gt, &t);
        for (k, &th) in t.iter().enumerate() {
            assert_eq!(
                counts[k],
                Confusion::from_probs(&probs, gt.data(), th),
                "threshold {th}"
            );
        }
    }

    #[test]
    fn sweep_picks_best_threshold_and_pr_area() {
        // Case: gt voxels have p = 0.8, background p = 0.3 -> thresholds in (0.3, 0.8] are perfect.
        let gt = Mask::from_vec(vec![1, 4], vec![true, true, false, false]);
        let p = ProbMap::new(vec![1, 4], vec![1.0, 1.0], vec![0.8, 0.8, 0.3, 0.3]);
        let t = sweep_thresholds(0.05).unwrap();
        let r = sweep_summary(&[sweep_counts(&p, &gt, &t)], &t, EmptyPolicy::Default);
        assert_eq!(r.best_threshold, Some(0.35));
        assert_eq!(r.best_mean_dice, Some(1.0));
        // Recall is 1 at every swept threshold up to 0.8, then 0 with undefined precision: PR points all at
        // recall 1 -> zero area.
        assert_eq!(r.pr_auc, Some(0.0));
        let low = &r.points[0];
        assert_eq!(
            (low.mean_precision, low.mean_recall),
            (Some(0.5), Some(1.0))
        );
        // Above 0.8 the prediction is empty: dice 0 under the default policy (gt is not empty).
        assert_eq!(r.points[18].mean_dice, Some(0.0));
        assert_eq!(r.points[18].pooled_precision, None);
    }
}
