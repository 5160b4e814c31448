//! Confusion counts as sufficient statistics: update per case or batch, merge across shards/epochs, then compute.
//!
//! Every overlap metric is defined here once and returns `None` when it is undefined (0/0), so that the caller's
//! empty-mask policy, not this module, decides what an undefined value becomes.
use serde::{Deserialize, Serialize};

use crate::mask::binarize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        None
    } else {
        Some(num / den)
    }
}

impl Confusion {
    pub fn from_masks(pred: &[bool], gt: &[bool]) -> Self {
        assert_eq!(pred.len(), gt.len());
        let mut c = Confusion::default();
        c.update_masks(pred, gt);
        c
    }

    pub fn update_masks(&mut self, pred: &[bool], gt: &[bool]) {
        assert_eq!(pred.len(), gt.len());
        // Three sums (TP, |pred|, |gt|) in u32 lanes over blocks that cannot overflow them: the compiler vectorises
        // this, and large volumes are split across threads.
        fn sums(pred: &[bool], gt: &[bool]) -> (u64, u64, u64) {
            let (mut tp, mut pc, mut gc) = (0u64, 0u64, 0u64);
            for (p, g) in pred.chunks(1 << 16).zip(gt.chunks(1 << 16)) {
                let (mut t, mut a, mut b) = (0u32, 0u32, 0u32);
                for (&p, &g) in p.iter().zip(g) {
                    t += (p & g) as u32;
                    a += p as u32;
                    b += g as u32;
                }
                tp += t as u64;
                pc += a as u64;
                gc += b as u64;
            }
            (tp, pc, gc)
        }
        const BLOCK: usize = 1 << 22;
        let (tp, pc, gc) = if pred.len() > BLOCK {
            use rayon::prelude::*;
            pred.par_chunks(BLOCK)
                .zip(gt.par_chunks(BLOCK))
                .map(|(p, g)| sums(p, g))
                .reduce(|| (0, 0, 0), |x, y| (x.0 + y.0, x.1 + y.1, x.2 + y.2))
        } else {
            sums(pred, gt)
        };
        let (fp, fn_) = (pc - tp, gc - tp);
        self.tp += tp;
        self.fp += fp;
        self.fn_ += fn_;
        self.tn += pred.len() as u64 - tp - fp - fn_;
    }

    /// Counts for a probability map binarised with `p >= threshold`.
    pub fn update_probs(&mut self, prob: &[f32], gt: &[bool], threshold: f32) {
        assert_eq!(prob.len(), gt.len());
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        for (&p, &g) in prob.iter().zip(gt) {
            let p = binarize(p, threshold);
            tp += (p & g) as u64;
            fp += (p & !g) as u64;
            fn_ += (!p & g) as u64;
        }
        self.tp += tp;
        self.fp += fp;
        self.fn_ += fn_;
        self.tn += prob.len() as u64 - tp - fp - fn_;
    }

    pub fn from_probs(prob: &[f32], gt: &[bool], threshold: f32) -> Self {
        let mut c = Confusion::default();
        c.update_probs(prob, gt, threshold);
        c
    }

    pub fn merge(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }

    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }
    pub fn gt_count(&self) -> u64 {
        self.tp + self.fn_
    }
    pub fn pred_count(&self) -> u64 {
        self.tp + self.fp
    }

    pub fn dice(&self) -> Option<f64> {
        self.f_beta(1.0)
    }
    pub fn iou(&self) -> Option<f64> {
        ratio(self.tp as f64, (self.tp + self.fp + self.fn_) as f64)
    }
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp as f64, self.pred_count() as f64)
    }
    /// Recall, also called sensitivity.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp as f64, self.gt_count() as f64)
    }
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn as f64, (self.tn + self.fp) as f64)
    }
    pub fn accuracy(&self) -> Option<f64> {
        ratio((self.tp + self.tn) as f64, self.total() as f64)
    }
    pub fn balanced_accuracy(&self) -> Option<f64> {
        Some((self.recall()? + self.specificity()?) / 2.0)
    }
    /// Matthews correlation coefficient; undefined when any marginal is zero.
    pub fn mcc(&self) -> Option<f64> {
        let (tp, fp, fn_, tn) = (
            self.tp as f64,
            self.fp as f64,
            self.fn_ as f64,
            self.tn as f64,
        );
        let den = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
        ratio(tp * tn - fp * fn_, den)
    }
    /// F-beta: `(1+b^2) TP / ((1+b^2) TP + b^2 FN + FP)`; beta = 1 is Dice.
    pub fn f_beta(&self, beta: f64) -> Option<f64> {
        let b2 = beta * beta;
        let tp = self.tp as f64;
        ratio(
            (1.0 + b2) * tp,
            (1.0 + b2) * tp + b2 * self.fn_ as f64 + self.fp as f64,
        )
    }
    /// Tversky index `TP / (TP + alpha FP + beta FN)` (no smoothing: this is the metric, not the loss).
    pub fn tversky_index(&self, alpha: f64, beta: f64) -> Option<f64> {
        let tp = self.tp as f64;
        ratio(tp, tp + alpha * self.fp as f64 + beta * self.fn_ as f64)
    }
    /// Volume similarity `1 - |FN - FP| / (2TP + FP + FN)`.
    pub fn volume_similarity(&self) -> Option<f64> {
        let den = (2 * self.tp + self.fp + self.fn_) as f64;
        ratio(self.fn_.abs_diff(self.fp) as f64, den).map(|r| 1.0 - r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_dice() {
        let pred = [true, true, false, false, true];
        let gt = [true, false, true, false, true];
        let c = Confusion::from_masks(&pred, &gt);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (2, 1, 1, 1));
        assert!((c.dice().unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert!((c.iou().unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(Confusion::default().dice(), None);
    }

    #[test]
    fn probs_use_greater_or_equal() {
        let c = Confusion::from_probs(&[0.5, 0.49], &[true, true], 0.5);
        assert_eq!((c.tp, c.fn_), (1, 1));
    }
}
