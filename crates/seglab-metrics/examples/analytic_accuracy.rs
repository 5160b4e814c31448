//! Issue 21's accuracy tables: how far each voxel convention, and the mesh mode, is from the exact surface distances of the analytic
//! pair (spheres of radius 30 and 20 mm, centres 9 mm apart; circles in 2D), by spacing.
//! `cargo run --release -p seglab-metrics --example analytic_accuracy` prints the markdown table of BENCHMARKS.md.
#[path = "../tests/common/spheres.rs"]
mod spheres;

use spheres::{measure, measure_mesh, Pair};
use std::time::Instant;

fn main() {
    let tolerances = [2.0, 3.0];
    for (dims, spacings) in [
        (
            3,
            vec![
                vec![1.0; 3],
                vec![0.5; 3],
                vec![0.25; 3],
                vec![1.5, 0.5, 0.5],
            ],
        ),
        (
            2,
            vec![vec![1.0; 2], vec![0.5; 2], vec![0.25; 2], vec![0.1; 2]],
        ),
    ] {
        let pair = Pair { dims };
        let e = pair.exact();
        let exact_nsd: Vec<f64> = tolerances.iter().map(|&t| pair.exact_nsd(t)).collect();
        println!(
            "\n{} (exact: HD {:.3}, HD95 max-directed {:.3}, pooled {:.3}, ASSD {:.3}, MASD {:.3}, NSD@2 {:.4}, NSD@3 {:.4})\n",
            if dims == 3 { "Spheres" } else { "Circles" },
            e.hd, e.hd95_a_to_b.max(e.hd95_b_to_a), e.hd95_pooled, e.assd, e.masd, exact_nsd[0], exact_nsd[1]
        );
        println!("| spacing (mm) | HD | HD95 MONAI | HD95 DeepMind | HD95 MedPy (pooled) | ASSD pooled | ASSD mean-of-directed | NSD@2 DeepMind | NSD@2 voxel | NSD@3 DeepMind | NSD@3 voxel |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for s in spacings {
            let (a, b) = pair.rasterise(&s);
            let m = measure(&a, &b, &tolerances);
            let rel = |v: f64, x: f64| format!("{v:.3} ({:+.1} %)", 100.0 * (v - x) / x);
            let abs = |v: f64, x: f64| format!("{v:.4} ({:+.4})", v - x);
            let max_dir = e.hd95_a_to_b.max(e.hd95_b_to_a);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" x "),
                rel(m.hd, e.hd),
                rel(m.hd95_monai, max_dir),
                rel(m.hd95_deepmind, max_dir),
                rel(m.hd95_medpy, e.hd95_pooled),
                rel(m.assd_pooled, e.assd),
                rel(m.assd_mean_of_directed, e.masd),
                abs(m.nsd[0].1, exact_nsd[0]),
                abs(m.nsd[0].2, exact_nsd[0]),
                abs(m.nsd[1].1, exact_nsd[1]),
                abs(m.nsd[1].2, exact_nsd[1]),
            );
        }
        // The mesh mode on the same rasterisations, with its time (both runs of each tolerance) against the voxel
        // path's (default conventions, one run).
        println!(
            "\n`--distance-mode mesh` ({}):\n",
            if dims == 3 { "spheres" } else { "circles" }
        );
        println!("| spacing (mm) | HD | HD95 (max directed) | HD95 (pooled, medpy) | ASSD pooled | ASSD mean-of-directed | NSD@2 | NSD@3 | mesh time | voxel time |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let spacings: Vec<Vec<f64>> = if dims == 3 {
            vec![
                vec![1.0; 3],
                vec![0.5; 3],
                vec![0.25; 3],
                vec![1.5, 0.5, 0.5],
            ]
        } else {
            vec![vec![1.0; 2], vec![0.5; 2], vec![0.25; 2], vec![0.1; 2]]
        };
        for s in spacings {
            let (a, b) = pair.rasterise(&s);
            let t = Instant::now();
            let (m2, medpy) = measure_mesh(&a, &b, tolerances[0]);
            let mesh_time = t.elapsed().as_secs_f64() / 2.0;
            let (m3, _) = measure_mesh(&a, &b, tolerances[1]);
            let t = Instant::now();
            let voxel = seglab_metrics::distance::distance_metrics(&b, &a, &Default::default());
            let voxel_time = t.elapsed().as_secs_f64();
            std::hint::black_box(voxel);
            let rel = |v: f64, x: f64| format!("{v:.3} ({:+.2} %)", 100.0 * (v - x) / x);
            let abs = |v: f64, x: f64| format!("{v:.4} ({:+.4})", v - x);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} s | {:.3} s |",
                s.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" x "),
                rel(m2.hd, e.hd),
                rel(m2.hd95, e.hd95_a_to_b.max(e.hd95_b_to_a)),
                rel(medpy.hd95, e.hd95_pooled),
                rel(m2.assd, e.assd),
                rel(medpy.assd, e.masd),
                abs(m2.nsd, exact_nsd[0]),
                abs(m3.nsd, exact_nsd[1]),
                mesh_time,
                voxel_time,
            );
        }
    }
}
