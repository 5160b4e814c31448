//! Scores pooled over the images of a validation set, as a mergeable accumulator (update per image, merge, finish):
//! the trainer's per-epoch validation metrics. Built on the counts `evaluate` uses ([`Confusion`],
//! [`LesionCounts`]), so a metric defined here reaches the training records, `metrics.csv` and `compare`'s curves
//! through [`PooledScores`].
//!
//! Conventions: pixel scores of the pooled counts that are undefined (0/0) follow `evaluate`'s default empty-mask
//! policy (both empty -> 1, else 0); a case's Dice of 0/0 is 1; lesions are the 8-connected components of each image
//! (labelled on its own), counts summed over images; the threshold sweep is 0.05, 0.10, ..., 0.95 and picks the
//! lowest threshold with the highest pooled Dice.
use std::collections::BTreeMap;

use crate::confusion::Confusion;
use crate::evaluate::EmptyPolicy;
use crate::lesion::{lesion_metrics, LesionCounts, LesionSettings};
use crate::mask::{binarize, Mask};
use crate::summary::{prob_stats, settle};

/// The sweep's thresholds: `k * 0.05` computed in f32 for k = 1..=19, the values every training record since the first
/// release reports (`val_best_threshold` 0.6500000357627869). `evaluate --sweep` rounds to the decimal instead
/// ([`crate::summary::sweep_thresholds`]); the two lists differ in the last bits of 0.45, 0.65 and 0.9, so each keeps
/// its own.
pub fn sweep_thresholds() -> Vec<f32> {
    (1..=19).map(|k| k as f32 * 0.05).collect()
}

/// Bins of the probability histograms over [0, 1].
pub const HISTOGRAM_BINS: usize = 20;

/// Overlap scores of pooled confusion counts, undefined ones (0/0) settled by the default empty-mask policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlapScores {
    pub dice: f64,
    pub iou: f64,
    pub precision: f64,
    pub recall: f64,
}

impl OverlapScores {
    pub fn of(c: &Confusion) -> Self {
        let both_empty = c.pred_count() == 0 && c.gt_count() == 0;
        let s = |v: Option<f64>| {
            settle(v, both_empty, EmptyPolicy::Default)
                .expect("the default policy defines every score")
        };
        OverlapScores {
            dice: s(c.dice()),
            iou: s(c.iou()),
            precision: s(c.precision()),
            recall: s(c.recall()),
        }
    }
}

/// What the pooled scores are computed from; [`PooledAccumulator::merge`] of two is the accumulator of both image
/// sets (sums in a different order than one sequential pass, so floats may differ in the last bits).
#[derive(Clone, Debug)]
pub struct PooledAccumulator {
    threshold: f32,
    /// [`sweep_thresholds`], computed once.
    thresholds: Vec<f32>,
    merged: Confusion,
    sweep: Vec<Confusion>,
    per_case: BTreeMap<String, Confusion>,
    lesions: LesionCounts,
    /// `sum(p t)`, `sum(p)`, `sum(t)` for the soft Dice.
    soft: [f64; 3],
    /// Probability sums and pixel counts inside and outside lesions.
    prob_lesion: (f64, u64),
    prob_background: (f64, u64),
    hist_lesion: [u64; HISTOGRAM_BINS],
    hist_background: [u64; HISTOGRAM_BINS],
}

/// The pooled validation scores.
#[derive(Clone, Debug, PartialEq)]
pub struct PooledScores {
    /// Pooled counts and their scores at the accumulator's threshold.
    pub merged: Confusion,
    pub at_threshold: OverlapScores,
    /// Cases in name order and each one's Dice (its images' counts pooled); their mean (0 without cases).
    pub cases: Vec<String>,
    pub case_dice: Vec<f64>,
    pub mean_case_dice: f64,
    /// Each case's Dice, IoU, precision and recall at the threshold (its images' counts pooled; undefined scores
    /// settled by the default empty-mask policy: 1 when prediction and ground truth are both empty, else 0), in
    /// the order of `cases`.
    pub case_overlap: Vec<OverlapScores>,
    /// `2 sum(p t) / (sum p + sum t)`, 1 when both sums are 0.
    pub soft_dice: f64,
    pub best_threshold: f64,
    pub best_threshold_counts: Confusion,
    pub at_best_threshold: OverlapScores,
    pub lesions: LesionCounts,
    /// Mean probability on lesion / background pixels (0 without such pixels).
    pub mean_prob_lesion: f64,
    pub mean_prob_background: f64,
    pub hist_lesion: [u64; HISTOGRAM_BINS],
    pub hist_background: [u64; HISTOGRAM_BINS],
}

impl PooledAccumulator {
    /// Scores at `threshold` (`p >= threshold` is lesion), plus the sweep.
    pub fn new(threshold: f32) -> Self {
        let thresholds = sweep_thresholds();
        PooledAccumulator {
            threshold,
            merged: Confusion::default(),
            sweep: vec![Confusion::default(); thresholds.len()],
            thresholds,
            per_case: BTreeMap::new(),
            lesions: LesionCounts::default(),
            soft: [0.0; 3],
            prob_lesion: (0.0, 0),
            prob_background: (0.0, 0),
            hist_lesion: [0; HISTOGRAM_BINS],
            hist_background: [0; HISTOGRAM_BINS],
        }
    }

    /// Adds one image of `case`: probabilities and ground truth of one 2D image of `shape`, row-major.
    pub fn update(
        &mut self,
        case: &str,
        probs: &[f32],
        gt: &[bool],
        shape: &[usize],
    ) -> Result<(), String> {
        let c = Confusion::from_probs(probs, gt, self.threshold);
        self.merged.merge(&c);
        let pred_mask = Mask::from_vec(
            shape.to_vec(),
            probs.iter().map(|&v| binarize(v, self.threshold)).collect(),
        );
        let gt_mask = Mask::from_vec(shape.to_vec(), gt.to_vec());
        let report = lesion_metrics(&pred_mask, &gt_mask, &LesionSettings::default())?;
        self.lesions.merge(&report.counts());
        self.per_case.entry(case.to_string()).or_default().merge(&c);
        // One pass for the sweep's counts, the histograms and the soft sums.
        let stats = prob_stats(probs, gt, &self.thresholds, HISTOGRAM_BINS);
        for (conf, c) in self.sweep.iter_mut().zip(&stats.sweep) {
            conf.merge(c);
        }
        for (a, b) in self.hist_lesion.iter_mut().zip(&stats.hist_lesion) {
            *a += b;
        }
        for (a, b) in self.hist_background.iter_mut().zip(&stats.hist_background) {
            *a += b;
        }
        for (a, b) in self.soft.iter_mut().zip(stats.soft) {
            *a += b;
        }
        let n_lesion = stats.soft[2] as u64;
        self.prob_lesion.0 += stats.soft[0];
        self.prob_lesion.1 += n_lesion;
        self.prob_background.0 += stats.background_sum;
        self.prob_background.1 += probs.len() as u64 - n_lesion;
        Ok(())
    }

    pub fn merge(&mut self, other: &PooledAccumulator) {
        self.merged.merge(&other.merged);
        for (a, b) in self.sweep.iter_mut().zip(&other.sweep) {
            a.merge(b);
        }
        for (case, c) in &other.per_case {
            self.per_case.entry(case.clone()).or_default().merge(c);
        }
        self.lesions.merge(&other.lesions);
        for (a, b) in self.soft.iter_mut().zip(other.soft) {
            *a += b;
        }
        self.prob_lesion.0 += other.prob_lesion.0;
        self.prob_lesion.1 += other.prob_lesion.1;
        self.prob_background.0 += other.prob_background.0;
        self.prob_background.1 += other.prob_background.1;
        for (a, b) in self.hist_lesion.iter_mut().zip(other.hist_lesion) {
            *a += b;
        }
        for (a, b) in self.hist_background.iter_mut().zip(other.hist_background) {
            *a += b;
        }
    }

    pub fn finish(&self) -> PooledScores {
        let (best_i, _) = self
            .sweep
            .iter()
            .enumerate()
            .map(|(i, c)| (i, OverlapScores::of(c).dice))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let case_dice: Vec<f64> = self
            .per_case
            .values()
            .map(|c| c.dice().unwrap_or(1.0))
            .collect();
        let mean_case_dice = if case_dice.is_empty() {
            0.0
        } else {
            case_dice.iter().sum::<f64>() / case_dice.len() as f64
        };
        let [spt, sp, st] = self.soft;
        let mean = |(sum, n): (f64, u64)| if n > 0 { sum / n as f64 } else { 0.0 };
        PooledScores {
            merged: self.merged,
            at_threshold: OverlapScores::of(&self.merged),
            cases: self.per_case.keys().cloned().collect(),
            case_dice,
            mean_case_dice,
            case_overlap: self.per_case.values().map(OverlapScores::of).collect(),
            soft_dice: if sp + st > 0.0 {
                2.0 * spt / (sp + st)
            } else {
                1.0
            },
            best_threshold: self.thresholds[best_i] as f64,
            best_threshold_counts: self.sweep[best_i],
            at_best_threshold: OverlapScores::of(&self.sweep[best_i]),
            lesions: self.lesions,
            mean_prob_lesion: mean(self.prob_lesion),
            mean_prob_background: mean(self.prob_background),
            hist_lesion: self.hist_lesion,
            hist_background: self.hist_background,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let gt: Vec<bool> = (0..64)
            .map(|i| (i % 8 > 2 && i / 8 > 3) ^ (rng.uniform() < 0.05))
            .collect();
        let p = gt
            .iter()
            .map(|&g| (if g { 0.6 } else { 0.2 } + 0.5 * rng.uniform() - 0.25) as f32)
            .map(|v| v.clamp(0.0, 1.0))
            .collect();
        (p, gt)
    }

    #[test]
    fn merged_accumulators_equal_one_pass_and_scores_match_the_counts() {
        let images: Vec<_> = (0..4).map(image).collect();
        let mut all = PooledAccumulator::new(0.5);
        let (mut a, mut b) = (PooledAccumulator::new(0.5), PooledAccumulator::new(0.5));
        for (i, (p, g)) in images.iter().enumerate() {
            let case = if i < 2 { "x" } else { "y" };
            all.update(case, p, g, &[8, 8]).unwrap();
            if i % 2 == 0 { &mut a } else { &mut b }
                .update(case, p, g, &[8, 8])
                .unwrap();
        }
        a.merge(&b);
        let (s, m) = (all.finish(), a.finish());
        // Counts are integers: exact whatever the order; float sums agree to rounding.
        assert_eq!(s.merged, m.merged);
        assert_eq!(s.best_threshold_counts, m.best_threshold_counts);
        assert_eq!(s.lesions, m.lesions);
        assert_eq!(s.case_dice, m.case_dice);
        assert_eq!(
            (s.hist_lesion, s.hist_background),
            (m.hist_lesion, m.hist_background)
        );
        assert!((s.soft_dice - m.soft_dice).abs() < 1e-12);
        assert_eq!(s.cases, ["x", "y"]);
        let mut c = Confusion::default();
        for (p, g) in &images {
            c.merge(&Confusion::from_probs(p, g, 0.5));
        }
        assert_eq!(s.merged, c);
        assert_eq!(s.at_threshold.dice, c.dice().unwrap());
        let best = sweep_thresholds()
            .iter()
            .map(|&t| {
                let mut c = Confusion::default();
                for (p, g) in &images {
                    c.update_probs(p, g, t);
                }
                c.dice().unwrap()
            })
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(s.at_best_threshold.dice, best);
        assert_eq!(
            s.hist_lesion.iter().sum::<u64>() + s.hist_background.iter().sum::<u64>(),
            4 * 64
        );
        // Case "y" pools images 2 and 3.
        let mut y = Confusion::from_probs(&images[2].0, &images[2].1, 0.5);
        y.merge(&Confusion::from_probs(&images[3].0, &images[3].1, 0.5));
        assert_eq!(s.case_overlap[1], OverlapScores::of(&y));
        assert_eq!(s.case_overlap[1].recall, y.recall().unwrap());
        assert_eq!(s.case_overlap[0].dice, s.case_dice[0]);
    }

    #[test]
    fn case_scores_of_empty_masks_follow_the_default_policy() {
        let mut acc = PooledAccumulator::new(0.5);
        // Nothing to find and nothing found; a lesion missed entirely.
        acc.update("empty", &[0.1; 4], &[false; 4], &[2, 2])
            .unwrap();
        acc.update("missed", &[0.1; 4], &[true, false, false, false], &[2, 2])
            .unwrap();
        let s = acc.finish();
        let [empty, missed] = [s.case_overlap[0], s.case_overlap[1]];
        assert_eq!((empty.dice, empty.precision, empty.recall), (1.0, 1.0, 1.0));
        assert_eq!(
            (missed.dice, missed.precision, missed.recall),
            (0.0, 0.0, 0.0)
        );
    }
}
