//! Gradient statistics: the global norm and the share of exactly-zero entries, accumulated tensor by tensor (the
//! trainer's per-step record), and with the extremes for one gradient (`seglab loss`/`gradcheck`).
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
        let (min, max) = grad
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &g| {
                (lo.min(g as f64), hi.max(g as f64))
            });
        GradStats {
            norm: acc.norm(),
            min,
            max,
            zero_fraction: acc.zero_fraction(),
        }
    }
}

/// The norm and the share of zeros summed over the tensors of a gradient (the trainer's per-step figures, so no more
/// than these two sums per entry): each tensor's squares are summed in index order, then added to the total (a fixed
/// order, so the norm does not depend on threads).
#[derive(Clone, Debug, Default)]
pub struct GradAccumulator {
    sumsq: f64,
    zeros: u64,
    total: u64,
}

impl GradAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, values: &[f32]) {
        let (mut s, mut z) = (0f64, 0u64);
        for &x in values {
            s += (x as f64) * (x as f64);
            z += (x == 0.0) as u64;
        }
        self.sumsq += s;
        self.zeros += z;
        self.total += values.len() as u64;
    }

    /// `n` entries that got no gradient at all (a parameter the loss does not reach): zeros.
    pub fn add_zeros(&mut self, n: u64) {
        self.zeros += n;
        self.total += n;
    }

    pub fn norm(&self) -> f64 {
        self.sumsq.sqrt()
    }

    /// With no entries at all the gradient counts as all zeros (1).
    pub fn zero_fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.zeros as f64 / self.total as f64
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
        assert_eq!(acc.norm(), (9.0f64 + 2.25 + 16.0).sqrt());
        assert_eq!(acc.zero_fraction(), 7.0 / 10.0);
        let s = GradStats::of(&[3.0, 0.0, -1.5, 0.0, 4.0]);
        assert_eq!(
            (s.norm, s.min, s.max),
            ((9.0f64 + 2.25 + 16.0).sqrt(), -1.5, 4.0)
        );
        assert_eq!(s.zero_fraction, 2.0 / 5.0);
        assert_eq!(GradStats::of(&[]).zero_fraction, 1.0);
        assert_eq!(GradStats::of(&[2.0, -2.0]).norm, 8f64.sqrt());
    }
}
