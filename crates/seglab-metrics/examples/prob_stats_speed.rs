//! Times `prob_stats` (compare's per-voxel pass over a probability map) on a noisy 256x256 map, 19 thresholds and 20
//! bins as compare uses them: `cargo run --release -p seglab-metrics --example prob_stats_speed`.
use seglab_metrics::rng::SplitMix64;
use seglab_metrics::summary::{prob_stats, sweep_thresholds};
use std::time::Instant;

fn main() {
    let n = 256 * 256;
    let mut rng = SplitMix64::new(1);
    let gt: Vec<bool> = (0..n)
        .map(|i| {
            let (y, x) = ((i / 256) as i64 - 128, (i % 256) as i64 - 128);
            y * y + x * x < 900
        })
        .collect();
    let prob: Vec<f32> = gt
        .iter()
        .map(|&g| ((if g { 0.9 } else { 0.1 }) + 0.2 * rng.normal()).clamp(0.0, 1.0) as f32)
        .collect();
    let t = sweep_thresholds(0.05).unwrap();
    let mut times = Vec::new();
    let mut check = 0.0;
    for _ in 0..200 {
        let s = Instant::now();
        let st = prob_stats(&prob, &gt, &t, 20);
        times.push(s.elapsed().as_secs_f64());
        check += st.soft[0] + st.sweep[3].tp as f64;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "prob_stats: {:.2} ns/voxel (median of 200), check {check}",
        times[100] / n as f64 * 1e9
    );
}
