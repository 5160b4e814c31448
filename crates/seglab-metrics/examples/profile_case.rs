//! Runs the evaluate path of one pred/gt pair many times, for profiling (`perf record`) without the CLI around it:
//! `cargo run --release -p seglab-metrics --example profile_case -- PRED GT [REPEATS]`. `PHASES=1` times the crop,
//! distances, lesions, BraTS lesion-wise scores (GLI parameters) and instance matching apart.
use seglab_metrics::evaluate::{evaluate_masks, EvalSettings};
use seglab_metrics::io;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (pred, gt) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let repeats: usize = args.get(3).map_or(10, |s| s.parse().expect("REPEATS"));
    let settings = EvalSettings::default();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let (g, p) = rayon::join(|| io::read_native(&gt), || io::read_native(&pred));
        let t_read = t.elapsed();
        let g = g.unwrap().into_gt_mask(None).unwrap();
        let p = p.unwrap().into_pred_mask(0.5).unwrap();
        let t_mask = t.elapsed();
        let r = evaluate_masks("case", &p, &g, &settings).unwrap();
        std::hint::black_box(&r);
        times.push((t_read, t_mask, t.elapsed()));
        if std::env::var_os("PHASES").is_some() {
            let t = Instant::now();
            let crop = seglab_metrics::UnionCrop::new(&p, &g);
            let t_crop = t.elapsed();
            let d =
                seglab_metrics::distance::distance_metrics_in(crop.as_ref(), &settings.distance);
            let t_dist = t.elapsed();
            let l = seglab_metrics::lesion::lesion_metrics_in(
                crop.as_ref(),
                g.ndim(),
                &settings.lesion,
            );
            std::hint::black_box((&d, &l));
            let t_les = t.elapsed();
            let brats = seglab_metrics::brats::BratsSettings::challenge("gli").unwrap();
            std::hint::black_box(seglab_metrics::brats::lesion_wise(&p, &g, &brats));
            let t_brats = t.elapsed();
            std::hint::black_box(
                seglab_metrics::instances::instances(&p, &g, &settings.lesion, &Default::default())
                    .expect("default connectivity"),
            );
            println!(
                "crop {:.2} ms (some: {:?}), distances {:.2} ms, lesions {:.2} ms, brats {:.2} ms, instances {:.2} ms",
                t_crop.as_secs_f64() * 1e3,
                crop.is_some(),
                (t_dist - t_crop).as_secs_f64() * 1e3,
                (t_les - t_dist).as_secs_f64() * 1e3,
                (t_brats - t_les).as_secs_f64() * 1e3,
                (t.elapsed() - t_brats).as_secs_f64() * 1e3
            );
        }
    }
    for (a, b, c) in &times {
        println!(
            "read {:.2} ms, masks {:.2} ms, total {:.2} ms",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3
        );
    }
}
