//! Statistics over cases, the one home of each: mean/sd, percentiles, seeded percentile bootstrap intervals of a mean,
//! and the Wilcoxon signed-rank test (paired comparisons between experiment variants).
//!
//! Two percentile conventions are kept because published figures depend on their exact arithmetic:
//! [`quantile_sorted`] is the textbook linear interpolation `a + (b - a) g` (NumPy's default method, "type 7"; the
//! summaries' medians and bootstrap intervals), [`percentile_numpy`] reproduces NumPy's own two-sided lerp bit for bit
//! (HD95, where MONAI and MedPy call `np.percentile`). The bootstrap draws its indices with a [`SplitMix64`] mapping
//! chosen by the caller ([`SplitMix64::below_scaled`] for `evaluate`'s summaries, [`SplitMix64::below`] for
//! `compare`), for the same reason.
//!
//! Wilcoxon conventions (stated in the report):
//! - zero differences are dropped before ranking (Wilcoxon's original method, scipy's `zero_method="wilcox"`);
//! - tied |differences| get mid-ranks;
//! - with at most [`WILCOXON_EXACT_MAX_N`] non-zero differences the p-value is exact: the permutation distribution of
//!   the signed-rank sum under H0 (every sign equally likely), computed on doubled mid-ranks so ties stay exact. Without
//!   ties this is the classical exact test and equals scipy's `method="exact"`;
//! - above that, the normal approximation with the tie-corrected variance
//!   `n(n+1)(2n+1)/24 - sum(t^3 - t)/48` and no continuity correction (scipy's `method="approx"`, `correction=False`).
//!
//! All p-values are two-sided: `min(1, 2 * min(P(W <= w), P(W >= w)))`.
use serde::{Deserialize, Serialize};

/// Largest number of non-zero differences for which the exact distribution is used.
pub const WILCOXON_EXACT_MAX_N: usize = 50;

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n - 1 denominator). A single value has no spread to estimate: returns 0 so that a
/// one-seed experiment still prints "mean +/- 0"; an empty slice gives NaN.
pub fn sd(x: &[f64]) -> f64 {
    match x.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(x);
            (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
    }
}

pub use crate::rng::SplitMix64;

/// Quantile of sorted data with linear interpolation between order statistics (numpy's default, "type 7").
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `np.percentile(sorted, percent)` with the default linear method, including NumPy's two-sided lerp (from the
/// upper order statistic when the fraction is at least 0.5); NaN for an empty slice.
pub fn percentile_numpy(sorted: &[f64], percent: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let q = percent / 100.0;
    let virtual_index = (n - 1) as f64 * q;
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let lo = (prev as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// The `resamples` means of resamples with replacement of `x`, sorted, drawn from a [`SplitMix64`] seeded with `seed`
/// whose integers are mapped to indices by `draw` (see the module docs). Empty when `x` is.
///
/// Resample `r` takes draws `r n .. (r + 1) n` of the stream, so [`LANES`] resamples are drawn side by side from
/// skipped copies of the generator (each sum waits on its previous addition; independent sums overlap), each summed in
/// its own order exactly as `Iterator::sum` sums it: the same means as one resample after the other.
pub fn bootstrap_means(
    x: &[f64],
    resamples: usize,
    seed: u64,
    draw: impl Fn(&mut SplitMix64, usize) -> usize,
) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    let rng = SplitMix64::new(seed);
    let n = x.len();
    // `Iterator::sum`'s starting value (the sign of its zero differs between Rust versions).
    let zero: f64 = std::iter::empty::<f64>().sum();
    let mut means = Vec::with_capacity(resamples);
    for r0 in (0..resamples).step_by(LANES) {
        let lanes = LANES.min(resamples - r0);
        let mut g: [SplitMix64; LANES] =
            std::array::from_fn(|l| rng.skipped(((r0 + l) * n) as u64));
        let mut sums = [zero; LANES];
        for _ in 0..n {
            for l in 0..lanes {
                sums[l] += x[draw(&mut g[l], n)];
            }
        }
        means.extend(sums[..lanes].iter().map(|s| s / n as f64));
    }
    means.sort_by(f64::total_cmp);
    means
}

/// Resamples a bootstrap draws side by side.
pub const LANES: usize = 4;

/// The indices [`bootstrap_means`] draws for `x.len() == n`, in stream order (resample `r` is `r n .. (r + 1) n`): many
/// metrics over the same cases resample with the same indices, which are then drawn once
/// ([`bootstrap_means_from`]).
pub fn bootstrap_draws(
    n: usize,
    resamples: usize,
    seed: u64,
    draw: impl Fn(&mut SplitMix64, usize) -> usize,
) -> Vec<u32> {
    assert!(n <= u32::MAX as usize, "too many values to resample");
    let mut rng = SplitMix64::new(seed);
    (0..n * resamples)
        .map(|_| draw(&mut rng, n) as u32)
        .collect()
}

/// [`bootstrap_means`] with the indices of [`bootstrap_draws`] for `x.len()`: the same means, bit for bit.
pub fn bootstrap_means_from(x: &[f64], draws: &[u32]) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    let n = x.len();
    assert_eq!(draws.len() % n, 0, "draws are not whole resamples of x");
    let resamples = draws.len() / n;
    let zero: f64 = std::iter::empty::<f64>().sum();
    let mut means = Vec::with_capacity(resamples);
    for r0 in (0..resamples).step_by(LANES) {
        let lanes = LANES.min(resamples - r0);
        let rows: [&[u32]; LANES] = std::array::from_fn(|l| {
            let r = (r0 + l.min(lanes - 1)) * n;
            &draws[r..r + n]
        });
        let mut sums = [zero; LANES];
        for j in 0..n {
            for l in 0..LANES {
                sums[l] += x[rows[l][j] as usize];
            }
        }
        means.extend(sums[..lanes].iter().map(|s| s / n as f64));
    }
    means.sort_by(f64::total_cmp);
    means
}

/// Percentile bootstrap interval of the mean of `x`: the `(1-level)/2` and `(1+level)/2` quantiles of
/// [`bootstrap_means`] drawn with [`SplitMix64::below`].
pub fn bootstrap_mean_ci(x: &[f64], level: f64, resamples: usize, seed: u64) -> (f64, f64) {
    if x.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let means = bootstrap_means(x, resamples, seed, SplitMix64::below);
    let alpha = (1.0 - level) / 2.0;
    (
        quantile_sorted(&means, alpha),
        quantile_sorted(&means, 1.0 - alpha),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    Exact,
    NormalApprox,
}

impl WilcoxonMethod {
    pub fn describe(self) -> &'static str {
        match self {
            WilcoxonMethod::Exact => "exact",
            WilcoxonMethod::NormalApprox => "normal approximation with tie correction",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// Number of non-zero differences (the effective sample size).
    pub n: usize,
    pub zeros_dropped: usize,
    /// Sum of the (mid-)ranks of the positive differences.
    pub w_plus: f64,
    /// `min(W+, W-)`, the statistic scipy reports.
    pub statistic: f64,
    pub p_value: f64,
    pub method: WilcoxonMethod,
}

/// Mid-ranks (1-based) of `v`, and the sizes of the tie groups.
fn mid_ranks(v: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        // Positions i..=j share the mean of ranks i+1..=j+1.
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        if j > i {
            ties.push(j - i + 1);
        }
        i = j + 1;
    }
    (ranks, ties)
}

/// Two-sided Wilcoxon signed-rank test of `d` (paired differences) against a zero median; exact for small samples,
/// normal approximation above [`WILCOXON_EXACT_MAX_N`] non-zero differences (see the module docs).
pub fn wilcoxon_signed_rank(d: &[f64]) -> Wilcoxon {
    let nonzero = d.iter().filter(|v| **v != 0.0).count();
    let method = if nonzero <= WILCOXON_EXACT_MAX_N {
        WilcoxonMethod::Exact
    } else {
        WilcoxonMethod::NormalApprox
    };
    wilcoxon_signed_rank_with(d, method)
}

/// As [`wilcoxon_signed_rank`] with the p-value method forced (the normal approximation is also valid for small n;
/// the exact method is only practical up to a few hundred differences).
pub fn wilcoxon_signed_rank_with(d: &[f64], method: WilcoxonMethod) -> Wilcoxon {
    let nz: Vec<f64> = d.iter().copied().filter(|v| *v != 0.0).collect();
    let n = nz.len();
    let zeros_dropped = d.len() - n;
    if n == 0 {
        // No non-zero difference: nothing speaks against H0.
        return Wilcoxon {
            n,
            zeros_dropped,
            w_plus: 0.0,
            statistic: 0.0,
            p_value: 1.0,
            method,
        };
    }
    let abs: Vec<f64> = nz.iter().map(|v| v.abs()).collect();
    let (ranks, ties) = mid_ranks(&abs);
    let w_plus: f64 = nz
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| **v > 0.0)
        .map(|(_, r)| *r)
        .sum();
    let total = (n * (n + 1)) as f64 / 2.0;
    let statistic = w_plus.min(total - w_plus);
    let p_value = match method {
        WilcoxonMethod::Exact => exact_p(&ranks, w_plus),
        WilcoxonMethod::NormalApprox => {
            let nf = n as f64;
            let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum::<f64>() / 48.0;
            let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term;
            if var <= 0.0 {
                1.0
            } else {
                let z = (w_plus - total / 2.0) / var.sqrt();
                (erfc(z.abs() / std::f64::consts::SQRT_2)).min(1.0)
            }
        }
    };
    Wilcoxon {
        n,
        zeros_dropped,
        w_plus,
        statistic,
        p_value,
        method,
    }
}

/// Exact two-sided p-value of W+ given the (mid-)ranks: counts sign assignments by dynamic programming over doubled
/// ranks (mid-ranks are multiples of 1/2, so doubling makes them integers and ties stay exact).
fn exact_p(ranks: &[f64], w_plus: f64) -> f64 {
    let doubled: Vec<usize> = ranks.iter().map(|r| (r * 2.0).round() as usize).collect();
    let max: usize = doubled.iter().sum();
    // counts[s] = number of sign assignments with doubled W+ == s, as f64 (2^50 fits exactly).
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    let mut reach = 0;
    for &r in &doubled {
        for s in (0..=reach).rev() {
            if counts[s] != 0.0 {
                counts[s + r] += counts[s];
            }
        }
        reach += r;
    }
    let w = (w_plus * 2.0).round() as usize;
    let all = 2f64.powi(ranks.len() as i32);
    let le: f64 = counts[..=w].iter().sum::<f64>() / all;
    let ge: f64 = counts[w..].iter().sum::<f64>() / all;
    (2.0 * le.min(ge)).min(1.0)
}

/// Complementary error function to double precision (musl's, via `libm`), so that tiny p-values keep their relative
/// precision and the normal approximation matches scipy's to rounding.
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Side by side, the resample means are those of the plain loop, bit for bit (a negative zero included), for
    /// every draw mapping and resample counts that are not multiples of the lanes.
    #[test]
    fn lanes_give_the_plain_loops_means() {
        let mut r = SplitMix64::new(3);
        let x: Vec<f64> = (0..57)
            .map(|i| if i % 9 == 0 { -0.0 } else { r.uniform() - 0.5 })
            .collect();
        let draws: [fn(&mut SplitMix64, usize) -> usize; 3] = [
            SplitMix64::below,
            SplitMix64::below_53,
            SplitMix64::below_scaled,
        ];
        for draw in draws {
            for resamples in [1usize, 7, 2000] {
                let mut rng = SplitMix64::new(11);
                let n = x.len();
                let mut plain: Vec<f64> = (0..resamples)
                    .map(|_| (0..n).map(|_| x[draw(&mut rng, n)]).sum::<f64>() / n as f64)
                    .collect();
                plain.sort_by(f64::total_cmp);
                let got = bootstrap_means(&x, resamples, 11, draw);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                let from = bootstrap_means_from(&x, &bootstrap_draws(n, resamples, 11, draw));
                assert_eq!(
                    from.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
        let zeros = [-0.0f64; 5];
        let plain = (0..5).map(|i| zeros[i]).sum::<f64>() / 5.0;
        assert_eq!(
            bootstrap_means(&zeros, 3, 1, SplitMix64::below)[0].to_bits(),
            plain.to_bits()
        );
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn mean_and_sd_match_hand_values() {
        // 2,4,4,4,5,5,7,9: mean 5, sum of squares 32, sample variance 32/7.
        let x = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&x), 5.0);
        assert!((sd(&x) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(sd(&[3.0]), 0.0);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        // numpy.quantile([1,2,3,4], 0.5) == 2.5, 0.25 -> 1.75
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.25), 1.75);
    }

    // Reference p-values below are from scipy 1.17.1 `scipy.stats.wilcoxon` (run once by hand, not at test time);
    // the small all-positive ones are 2/2^n by hand.
    #[test]
    fn wilcoxon_exact_all_positive_is_two_over_two_to_the_n() {
        let w = wilcoxon_signed_rank(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(w.method, WilcoxonMethod::Exact);
        assert_eq!(w.statistic, 0.0);
        assert_eq!(w.w_plus, 15.0);
        assert!(close(w.p_value, 0.0625, 1e-12));
        let w = wilcoxon_signed_rank(&[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]);
        assert!(close(w.p_value, 0.03125, 1e-12));
    }

    #[test]
    fn wilcoxon_exact_matches_scipy_on_darwin_data() {
        // scipy docs example (Darwin's plant heights): statistic 24, exact p 0.041259765625, approx p 0.0408881329...
        let d = [
            6.0, 8.0, 14.0, 16.0, 23.0, 24.0, 28.0, 29.0, 41.0, -48.0, 49.0, 56.0, 60.0, -67.0,
            75.0,
        ];
        let w = wilcoxon_signed_rank(&d);
        assert_eq!(w.statistic, 24.0);
        assert!(close(w.p_value, 0.041259765625, 1e-12), "{}", w.p_value);
        let a = wilcoxon_signed_rank_with(&d, WilcoxonMethod::NormalApprox);
        assert!(close(a.p_value, 0.04088813291185591, 1e-5), "{}", a.p_value);
        let w = wilcoxon_signed_rank(&[1.0, -2.0, 3.0, -4.0, 5.0, 6.0, 7.0, -8.0, 9.0, 10.0]);
        assert_eq!(w.statistic, 14.0);
        assert!(close(w.p_value, 0.193359375, 1e-12));
    }

    #[test]
    fn wilcoxon_exact_with_ties_counts_midrank_subsets() {
        // |d| = 1, 2, 2, 3 -> ranks 1, 2.5, 2.5, 4; W+ = 2.5 + 2.5 + 4 = 9 of 10. Sign sets with W+ >= 9: all
        // positive (10) and only the rank-1 one negative (9): 2 of 16, so p = 2 * 2/16 = 0.25.
        let w = wilcoxon_signed_rank(&[-1.0, 2.0, 2.0, 3.0]);
        assert_eq!(w.w_plus, 9.0);
        assert!(close(w.p_value, 0.25, 1e-12));
    }

    #[test]
    fn wilcoxon_approx_with_zeros_and_ties_matches_scipy() {
        // scipy: wilcoxon(d, zero_method='wilcox', method='approx', correction=False) -> statistic 20, p 0.0739374...
        let d = [
            0.0, 0.0, 1.0, 1.0, -1.0, 2.0, 2.0, 2.0, -3.0, 4.0, 5.0, 5.0, -6.0, 7.0, 8.0,
        ];
        let w = wilcoxon_signed_rank_with(&d, WilcoxonMethod::NormalApprox);
        assert_eq!(w.zeros_dropped, 2);
        assert_eq!(w.n, 13);
        assert_eq!(w.statistic, 20.0);
        assert!(close(w.p_value, 0.07393743585215212, 1e-5), "{}", w.p_value);
    }

    #[test]
    fn wilcoxon_large_n_uses_normal_approximation() {
        // 1..=60 all positive: scipy approx p 1.6295557943119345e-11.
        let d: Vec<f64> = (1..=60).map(f64::from).collect();
        let w = wilcoxon_signed_rank(&d);
        assert_eq!(w.method, WilcoxonMethod::NormalApprox);
        assert!(
            close(w.p_value, 1.6295557943119345e-11, 1e-5),
            "{}",
            w.p_value
        );
        // 70 values with 14 distinct magnitudes (heavy ties): scipy approx p 0.16430818380596635.
        let d: Vec<f64> = (0..70)
            .map(|i| {
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                s * ((i % 7 + 1) as f64) * 0.5 + 0.3
            })
            .collect();
        let w = wilcoxon_signed_rank(&d);
        assert_eq!(w.statistic, 1005.0);
        assert!(close(w.p_value, 0.16430818380596635, 1e-5), "{}", w.p_value);
    }

    #[test]
    fn wilcoxon_all_zero_differences_give_p_one() {
        let w = wilcoxon_signed_rank(&[0.0; 8]);
        assert_eq!(w.n, 0);
        assert_eq!(w.p_value, 1.0);
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        // Two-sided normal p at z = 1.959964 is 0.05.
        assert!(close(erfc(1.959964 / std::f64::consts::SQRT_2), 0.05, 1e-5));
        assert!(close(erfc(-1.0), 1.842700792949715, 1e-6));
    }

    #[test]
    fn bootstrap_interval_of_two_point_sample_spans_both_points() {
        // Resampled means of {0, 1} (n = 2) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5%
        // quantiles are 0 and 1.
        let (lo, hi) = bootstrap_mean_ci(&[0.0, 1.0], 0.95, 10_000, 7);
        assert_eq!((lo, hi), (0.0, 1.0));
        let (lo, hi) = bootstrap_mean_ci(&[0.3; 5], 0.95, 1000, 7);
        assert!((lo - 0.3).abs() < 1e-12 && (hi - 0.3).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let x: Vec<f64> = (0..40)
            .map(|i| ((i * 37) % 11) as f64 / 10.0 - 0.4)
            .collect();
        let a = bootstrap_mean_ci(&x, 0.95, 2000, 11);
        let b = bootstrap_mean_ci(&x, 0.95, 2000, 11);
        assert_eq!(a, b);
        let m = mean(&x);
        assert!(a.0 < m && m < a.1);
        // Width close to the normal-theory 2 * 1.96 * sd / sqrt(n).
        let expected = 2.0 * 1.96 * sd(&x) / (x.len() as f64).sqrt();
        assert!(
            ((a.1 - a.0) / expected - 1.0).abs() < 0.15,
            "{a:?} vs {expected}"
        );
    }
}
