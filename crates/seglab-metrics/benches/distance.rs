//! Surface-distance engine on the 3D workloads:
//! (b) 256x256x128 at spacing 0.8, 0.8, 3.0 with a few lesions; (c) 512x512x256 with one large lesion.
//! Whole-command timings against the Python peers are in `bench-evaluate` (crates/seglab); this bench isolates
//! `distance_metrics` and its two surface models.
//!
//! `cargo bench -p seglab-metrics --bench distance`
use criterion::{criterion_group, criterion_main, Criterion};
use seglab_metrics::distance::{
    distance_metrics, surface_distances, DistanceSettings, Hd95Convention, NsdConvention,
    SurfaceModel,
};
use seglab_metrics::Mask;
use std::hint::black_box;

/// Ellipsoids (centre, radii in voxels) painted into a mask.
fn paint(shape: [usize; 3], spacing: [f64; 3], ellipsoids: &[([f64; 3], [f64; 3])]) -> Mask {
    let mut m = Mask::zeros(shape.to_vec(), spacing.to_vec());
    let data = m.data_mut();
    for &(c, r) in ellipsoids {
        let lo: Vec<usize> = (0..3)
            .map(|a| (c[a] - r[a]).floor().max(0.0) as usize)
            .collect();
        let hi: Vec<usize> = (0..3)
            .map(|a| ((c[a] + r[a]).ceil() as usize).min(shape[a] - 1))
            .collect();
        for i in lo[0]..=hi[0] {
            for j in lo[1]..=hi[1] {
                for k in lo[2]..=hi[2] {
                    let d = ((i as f64 - c[0]) / r[0]).powi(2)
                        + ((j as f64 - c[1]) / r[1]).powi(2)
                        + ((k as f64 - c[2]) / r[2]).powi(2);
                    if d <= 1.0 {
                        data[(i * shape[1] + j) * shape[2] + k] = true;
                    }
                }
            }
        }
    }
    m
}

/// Workload (b): four lesions, predictions shifted and rescaled, one missed, one false positive.
fn few_lesions() -> (Mask, Mask) {
    let shape = [256, 256, 128];
    let sp = [0.8, 0.8, 3.0];
    let gt = [
        ([60.0, 70.0, 40.0], [18.0, 14.0, 6.0]),
        ([150.0, 90.0, 70.0], [25.0, 20.0, 9.0]),
        ([200.0, 190.0, 30.0], [9.0, 11.0, 4.0]),
        ([90.0, 200.0, 100.0], [6.0, 6.0, 3.0]),
    ];
    let pred = [
        ([61.0, 68.0, 41.0], [20.0, 15.0, 6.5]),
        ([148.0, 92.0, 69.0], [22.0, 19.0, 8.0]),
        ([201.0, 191.0, 30.0], [8.0, 12.0, 4.5]),
        ([30.0, 30.0, 110.0], [5.0, 5.0, 2.0]),
    ];
    (paint(shape, sp, &pred), paint(shape, sp, &gt))
}

/// Workload (c): one large lesion, prediction slightly shifted and larger.
fn large_lesion() -> (Mask, Mask) {
    let shape = [512, 512, 256];
    let sp = [0.8, 0.8, 3.0];
    let gt = paint(shape, sp, &[([256.0, 250.0, 128.0], [150.0, 130.0, 60.0])]);
    let pred = paint(shape, sp, &[([259.0, 247.0, 127.0], [156.0, 128.0, 63.0])]);
    (pred, gt)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("distance");
    g.sample_size(10);
    for (name, (pred, gt)) in [
        ("b_256x256x128_few_lesions", few_lesions()),
        ("c_512x512x256_large_lesion", large_lesion()),
    ] {
        g.bench_function(format!("{name}/default(monai_hd95+deepmind_nsd)"), |b| {
            b.iter(|| black_box(distance_metrics(&pred, &gt, &DistanceSettings::default())))
        });
        let voxel_only = DistanceSettings {
            hd95: Hd95Convention::Monai,
            nsd: NsdConvention::Voxel,
            ..Default::default()
        };
        g.bench_function(format!("{name}/voxel_surfaces_only"), |b| {
            b.iter(|| black_box(distance_metrics(&pred, &gt, &voxel_only)))
        });
        g.bench_function(format!("{name}/surfels_only"), |b| {
            b.iter(|| black_box(surface_distances(&pred, &gt, SurfaceModel::Surfel)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
