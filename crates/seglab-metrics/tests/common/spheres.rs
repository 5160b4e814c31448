//! The analytic pair of issue 21: sphere A of radius 30 mm at the origin and sphere B of radius 20 mm centred 9 mm
//! along axis 0 (B inside A), or the same two circles in 2D. Exact surface distances, and the pair rasterised at a
//! spacing for seglab's voxel conventions. Shared by `tests/analytic_accuracy.rs` and `examples/analytic_accuracy.rs`.
#![allow(dead_code)]

use seglab_metrics::distance::{
    distance_metrics, AssdConvention, DistanceMetrics, DistanceMode, DistanceOutcome,
    DistanceSettings, Hd95Convention, NsdConvention,
};
use seglab_metrics::Mask;

pub const RADIUS_A: f64 = 30.0;
pub const RADIUS_B: f64 = 20.0;
pub const OFFSET: f64 = 9.0;

/// A directed distance along a surface, as a monotone function of `u` in [0, 1] such that `u` is uniform over the
/// surface's area (3D: `u = (1 - cos theta) / 2`, the polar angle about the offset axis) or length (2D: `u = phi / pi`).
#[derive(Clone, Copy)]
pub struct Pair {
    pub dims: usize,
}

impl Pair {
    /// The cosine of the angle at `u`.
    fn cos(&self, u: f64) -> f64 {
        if self.dims == 3 {
            1.0 - 2.0 * u
        } else {
            (std::f64::consts::PI * u).cos()
        }
    }

    /// From A's surface to B's: `|q - c| - r` (A's points lie outside B); increasing in `u`.
    pub fn a_to_b(&self, u: f64) -> f64 {
        let (r, c) = (RADIUS_A, OFFSET);
        (r * r + c * c - 2.0 * r * c * self.cos(u)).sqrt() - RADIUS_B
    }

    /// From B's surface to A's: `R - |p|` (B lies inside A); increasing in `u`.
    pub fn b_to_a(&self, u: f64) -> f64 {
        let (r, c) = (RADIUS_B, OFFSET);
        RADIUS_A - (r * r + c * c + 2.0 * r * c * self.cos(u)).sqrt()
    }

    /// Surface measure of A relative to B's (area in 3D, length in 2D).
    fn weight_a(&self) -> f64 {
        (RADIUS_A / RADIUS_B).powi(self.dims as i32 - 1)
    }

    /// Mean of a directed distance over its surface (Simpson's rule, 2 x 10^5 intervals).
    fn mean(f: impl Fn(f64) -> f64) -> f64 {
        let n = 200_000;
        let h = 1.0 / n as f64;
        let mut s = f(0.0) + f(1.0);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    /// Fraction of the surface whose directed distance is at most `x` (the distances increase with `u`).
    fn fraction_within(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        if f(0.0) > x {
            return 0.0;
        }
        if f(1.0) <= x {
            return 1.0;
        }
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if f(mid) <= x {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn exact(&self) -> Exact {
        let (ab, ba) = (|u| self.a_to_b(u), |u| self.b_to_a(u));
        let wa = self.weight_a();
        let (mean_ab, mean_ba) = (Self::mean(ab), Self::mean(ba));
        // The pooled percentile: where the area-weighted mixture of both directions reaches 95 %.
        let pooled = |x: f64| {
            (wa * Self::fraction_within(ab, x) + Self::fraction_within(ba, x)) / (wa + 1.0)
        };
        let (mut lo, mut hi) = (0.0, self.a_to_b(1.0).max(self.b_to_a(1.0)));
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if pooled(mid) < 0.95 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Exact {
            hd: self.a_to_b(1.0).max(self.b_to_a(1.0)),
            hd95_a_to_b: self.a_to_b(0.95),
            hd95_b_to_a: self.b_to_a(0.95),
            hd95_pooled: hi,
            mean_a_to_b: mean_ab,
            mean_b_to_a: mean_ba,
            masd: 0.5 * (mean_ab + mean_ba),
            assd: (wa * mean_ab + mean_ba) / (wa + 1.0),
        }
    }

    /// Normalised surface Dice at `tau` mm: the fraction of both surfaces (by area) within `tau` of the other.
    pub fn exact_nsd(&self, tau: f64) -> f64 {
        let wa = self.weight_a();
        (wa * Self::fraction_within(|u| self.a_to_b(u), tau)
            + Self::fraction_within(|u| self.b_to_a(u), tau))
            / (wa + 1.0)
    }

    /// Both shapes rasterised at `spacing` (mm per array axis; voxel centres on a grid centred on A's centre):
    /// `(A, B)`.
    pub fn rasterise(&self, spacing: &[f64]) -> (Mask, Mask) {
        assert_eq!(spacing.len(), self.dims);
        let shape: Vec<usize> = spacing
            .iter()
            .map(|s| 2 * ((RADIUS_A + 2.0) / s).ceil() as usize + 1)
            .collect();
        let n: usize = shape.iter().product();
        let (mut a, mut b) = (vec![false; n], vec![false; n]);
        for (i, (va, vb)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            let mut rest = i;
            let (mut ra, mut rb) = (0.0, 0.0);
            for k in (0..self.dims).rev() {
                let idx = rest % shape[k];
                rest /= shape[k];
                let x = (idx as f64 - (shape[k] / 2) as f64) * spacing[k];
                ra += x * x;
                let xb = if k == 0 { x - OFFSET } else { x };
                rb += xb * xb;
            }
            *va = ra <= RADIUS_A * RADIUS_A;
            *vb = rb <= RADIUS_B * RADIUS_B;
        }
        (
            Mask::new(shape.clone(), spacing.to_vec(), a),
            Mask::new(shape, spacing.to_vec(), b),
        )
    }
}

/// Exact values of the pair (distances in mm).
pub struct Exact {
    pub hd: f64,
    /// Directed 95th percentiles (area-weighted).
    pub hd95_a_to_b: f64,
    pub hd95_b_to_a: f64,
    /// The 95th percentile of both directions pooled, area-weighted.
    pub hd95_pooled: f64,
    pub mean_a_to_b: f64,
    pub mean_b_to_a: f64,
    /// Mean of the two directed means.
    pub masd: f64,
    /// Area-weighted mean over both surfaces.
    pub assd: f64,
}

/// What seglab measures on the rasterised pair (prediction B, ground truth A) in every convention.
pub struct Measured {
    pub hd: f64,
    pub hd95_monai: f64,
    pub hd95_medpy: f64,
    pub hd95_deepmind: f64,
    pub assd_pooled: f64,
    pub assd_mean_of_directed: f64,
    /// `(tolerance mm, deepmind, voxel)`.
    pub nsd: Vec<(f64, f64, f64)>,
}

pub fn measure(a: &Mask, b: &Mask, tolerances: &[f64]) -> Measured {
    let run = |hd95, assd, nsd, tol| {
        let s = DistanceSettings {
            hd95,
            assd,
            nsd,
            nsd_tolerance_mm: tol,
            mode: DistanceMode::Voxel,
        };
        match distance_metrics(b, a, &s) {
            DistanceOutcome::Computed(d) => d,
            _ => panic!("both shapes are non-empty"),
        }
    };
    let m = run(
        Hd95Convention::Monai,
        AssdConvention::Pooled,
        NsdConvention::Deepmind,
        tolerances[0],
    );
    let p = run(
        Hd95Convention::Medpy,
        AssdConvention::MeanOfDirected,
        NsdConvention::Voxel,
        tolerances[0],
    );
    let d = run(
        Hd95Convention::Deepmind,
        AssdConvention::Pooled,
        NsdConvention::Deepmind,
        tolerances[0],
    );
    let mut nsd = vec![(tolerances[0], m.nsd, p.nsd)];
    for &t in &tolerances[1..] {
        let x = run(
            Hd95Convention::Deepmind,
            AssdConvention::Pooled,
            NsdConvention::Deepmind,
            t,
        );
        let y = run(
            Hd95Convention::Deepmind,
            AssdConvention::Pooled,
            NsdConvention::Voxel,
            t,
        );
        nsd.push((t, x.nsd, y.nsd));
    }
    Measured {
        hd: m.hd,
        hd95_monai: m.hd95,
        hd95_medpy: p.hd95,
        hd95_deepmind: d.hd95,
        assd_pooled: m.assd,
        assd_mean_of_directed: p.assd,
        nsd,
    }
}

/// What `--distance-mode mesh` measures on the rasterised pair (prediction B, ground truth A): the default
/// conventions (HD95 the larger directed percentile, pooled ASSD) at tolerance `tol`, and MedPy's pooled HD95 with
/// the mean of the directed means.
pub fn measure_mesh(a: &Mask, b: &Mask, tol: f64) -> (DistanceMetrics, DistanceMetrics) {
    let run = |hd95, assd| {
        let s = DistanceSettings {
            hd95,
            assd,
            nsd_tolerance_mm: tol,
            mode: DistanceMode::Mesh,
            ..Default::default()
        };
        match distance_metrics(b, a, &s) {
            DistanceOutcome::Computed(d) => d,
            _ => panic!("both shapes are non-empty"),
        }
    };
    (
        run(Hd95Convention::Monai, AssdConvention::Pooled),
        run(Hd95Convention::Medpy, AssdConvention::MeanOfDirected),
    )
}
