//! SplitMix64, the one random generator of the workspace (bootstrap intervals, training streams, synthetic data).
//!
//! Written out rather than taken from a crate so that a seed reproduces the same numbers bit for bit whatever
//! crate versions are installed. The state is one `u64` (serialised as that number), so a checkpoint can store it.
//!
//! Three integer mappings exist because published results were made with them (bootstrap intervals in reports,
//! training shuffles): each caller keeps the mapping its results were produced with.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SplitMix64(u64);

/// The state's increment per draw.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// The generator whose next draw follows state `state` (no seed mixing: callers that want nearby seeds
    /// decorrelated mix them first).
    pub fn new(state: u64) -> Self {
        SplitMix64(state)
    }

    /// The generator after `draws` more draws (the state advances by a constant per draw), without drawing them:
    /// lets independent parts of one stream run side by side.
    pub fn skipped(&self, draws: u64) -> Self {
        SplitMix64(self.0.wrapping_add(draws.wrapping_mul(GAMMA)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform index in `0..n`: 64-bit multiply-shift (bias below 2^-50 for any n used here). Compare's bootstrap.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform index in `0..n` from the top 53 bits, multiply-shift. Training batch order and augmentation.
    pub fn below_53(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Uniform index in `0..n` as `floor(uniform() * n)` in floating point. `evaluate`'s summary bootstrap.
    pub fn below_scaled(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }

    /// Standard normal (Box-Muller, one value per two draws).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_equals_drawing() {
        let mut r = SplitMix64::new(42);
        let ahead = r.skipped(1000);
        for _ in 0..1000 {
            r.next_u64();
        }
        assert_eq!(r, ahead);
    }

    #[test]
    fn reference_stream_and_mappings() {
        // SplitMix64 reference output for state 1234567 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        for n in [1usize, 2, 7, 1000] {
            let mut r = SplitMix64::new(99);
            for _ in 0..1000 {
                assert!(r.below(n) < n && r.below_53(n) < n && r.below_scaled(n) < n);
            }
        }
        let u: Vec<f64> = (0..1000)
            .scan(SplitMix64::new(5), |r, _| Some(r.uniform()))
            .collect();
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(serde_json::to_string(&SplitMix64::new(42)).unwrap(), "42");
    }
}
