//! Gradient statistics: the global norm, the extremes and the share of exactly-zero entries, accumulated tensor by
//! tensor (the trainer's per-step record, `seglab loss`/`gradcheck` on one gradient).
use serde::Serialize;

/// Norm, extremes and the share of exactly-zero entries of a gradient.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct GradStats {
    pub norm: f64,
    pub min: f64,
    pub max: f64,
    pub zero_fraction: f64,
}

impl GradStats {
    /// The statistics of one gradient.
    pub fn of(grad: &[f32]) -> Self {
        let mut acc = GradAccumulator::new();
        acc.add(grad);
        acc.finish()
    }
}

/// Sums over the tensors of a gradient: each tensor's squares are summed in index order, then added to the total
/// (a fixed order, so the norm does not depend on threads).
#[derive(Clone, Debug)]
pub struct GradAccumulator {
    sumsq: f64,
    zeros: u64,
    total: u64,
    min: f64,
    max: f64,
}

impl Default for GradAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl GradAccumulator {
    pub fn new() -> Self {
        GradAccumulator {
            sumsq: 0.0,
            zeros: 0,
            total: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub fn add(&mut self, values: &[f32]) {
        let (mut s, mut z) = (0f64, 0u64);
        let (mut lo, mut hi) = (self.min, self.max);
        for &x in values {
            let x = x as f64;
            s += x * x;
            z += (x == 0.0) as u64;
            lo = lo.min(x);
            hi = hi.max(x);
        }
        self.sumsq += s;
        self.zeros += z;
        self.total += values.len() as u64;
        (self.min, self.max) = (lo, hi);
    }

    /// `n` entries that got no gradient at all (a parameter the loss does not reach): zeros.
    pub fn add_zeros(&mut self, n: u64) {
        if n > 0 {
            self.zeros += n;
            self.total += n;
            self.min = self.min.min(0.0);
            self.max = self.max.max(0.0);
        }
    }

    /// The statistics; with no entries at all the gradient counts as all zeros (`zero_fraction` 1).
    pub fn finish(&self) -> GradStats {
        GradStats {
            norm: self.sumsq.sqrt(),
            min: self.min,
            max: self.max,
            zero_fraction: if self.total == 0 {
                1.0
            } else {
                self.zeros as f64 / self.total as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_accumulate_to_the_stats_of_their_concatenation() {
        let (a, b) = ([3.0f32, 0.0, -1.5], [0.0f32, 4.0]);
        let mut acc = GradAccumulator::new();
        acc.add(&a);
        acc.add(&b);
        acc.add_zeros(5);
        let s = acc.finish();
        assert_eq!(s.norm, (9.0f64 + 2.25 + 16.0).sqrt());
        assert_eq!((s.min, s.max), (-1.5, 4.0));
        assert_eq!(s.zero_fraction, 7.0 / 10.0);
        assert_eq!(GradStats::of(&[]).zero_fraction, 1.0);
        assert_eq!(GradStats::of(&[2.0, -2.0]).norm, 8f64.sqrt());
    }
}
