//! A small seeded random generator (SplitMix64) owned by the caller.
//!
//! Weight initialisation, data order, augmentation and dropout each draw from their own `Rng`, never from a
//! backend's global generator: runs in parallel threads stay independent and a run is reproduced exactly from
//! its seeds. The state is one `u64`, so checkpoints store it and `--resume` continues the same streams.
use seglab_metrics::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Serialised as `{"state": u64}` (SplitMix64 is a transparent `u64`), as checkpoints have always stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: SplitMix64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mixing the seed once keeps nearby seeds (0, 1, 2...) from giving correlated first draws.
        let mut r = Rng {
            state: SplitMix64::new(seed ^ 0x5EED_1AB5_EED1_AB5E),
        };
        r.next_u64();
        r
    }

    /// An independent stream derived from this seed and a label (e.g. "init", "data").
    pub fn derive(seed: u64, label: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.state.uniform()
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.state.below_53(n)
    }

    pub fn bool(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        self.state.normal()
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_labels_differ() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            Rng::derive(7, "init").next_u64(),
            Rng::derive(7, "data").next_u64()
        );
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(1);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
    }
}
