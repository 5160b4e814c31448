//! Times the distance transform alone on a case's crop, the way the voxel surface model runs it (the transform of
//! one mask's boundary voxels read at the other's), and prints a checksum of the values read, so that a change to
//! `edt.rs` can be checked for speed and for bit-identical results:
//! `cargo run --release -p seglab-metrics --example edt_speed -- PRED GT [REPEATS]`.
use seglab_metrics::edt::squared_edt_at;
use seglab_metrics::io;
use std::path::PathBuf;
use std::time::Instant;

/// Lesion voxels with a face neighbour outside the mask (or outside the grid).
fn boundary(m: &[bool], shape: [usize; 3]) -> Vec<bool> {
    let [n0, n1, n2] = shape;
    let at = |i: usize, j: usize, k: usize| m[(i * n1 + j) * n2 + k];
    let mut out = vec![false; m.len()];
    for i in 0..n0 {
        for j in 0..n1 {
            for k in 0..n2 {
                if !at(i, j, k) {
                    continue;
                }
                let inside = |a: usize, n: usize, d: isize| {
                    let b = a as isize + d;
                    b >= 0 && (b as usize) < n
                };
                let mut edge = false;
                for (a, n, axis) in [(i, n0, 0), (j, n1, 1), (k, n2, 2)] {
                    if n == 1 {
                        continue;
                    }
                    for d in [-1isize, 1] {
                        if !inside(a, n, d) {
                            edge = true;
                            continue;
                        }
                        let b = (a as isize + d) as usize;
                        let v = match axis {
                            0 => at(b, j, k),
                            1 => at(i, b, k),
                            _ => at(i, j, b),
                        };
                        edge |= !v;
                    }
                }
                out[(i * n1 + j) * n2 + k] = edge;
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (pred, gt) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let repeats: usize = args.get(3).map_or(10, |s| s.parse().expect("REPEATS"));
    let g = io::read_native(&gt).unwrap().into_gt_mask(None).unwrap();
    let p = io::read_native(&pred).unwrap().into_pred_mask(0.5).unwrap();
    let mut shape = [1usize; 3];
    let mut spacing = [1.0f64; 3];
    let off = 3 - g.ndim();
    shape[off..].copy_from_slice(g.shape());
    spacing[off..].copy_from_slice(g.spacing());
    // The union's bounding box plus one voxel on each side.
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (idx, (&a, &b)) in p.data().iter().zip(g.data()).enumerate() {
        if a || b {
            let c = [
                idx / (shape[1] * shape[2]),
                idx / shape[2] % shape[1],
                idx % shape[2],
            ];
            for x in 0..3 {
                lo[x] = lo[x].min(c[x]);
                hi[x] = hi[x].max(c[x]);
            }
        }
    }
    let lo: Vec<usize> = (0..3)
        .map(|x| lo[x].saturating_sub(usize::from(shape[x] > 1)))
        .collect();
    let hi: Vec<usize> = (0..3).map(|x| (hi[x] + 1).min(shape[x] - 1)).collect();
    let cs = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
    let cut = |m: &[bool]| -> Vec<bool> {
        let mut out = Vec::with_capacity(cs.iter().product());
        for i in lo[0]..=hi[0] {
            for j in lo[1]..=hi[1] {
                let row = (i * shape[1] + j) * shape[2];
                out.extend_from_slice(&m[row + lo[2]..=row + hi[2]]);
            }
        }
        out
    };
    let (bp, bg) = (boundary(&cut(p.data()), cs), boundary(&cut(g.data()), cs));
    println!(
        "crop {cs:?}, boundary voxels {} / {}",
        bp.iter().filter(|&&b| b).count(),
        bg.iter().filter(|&&b| b).count()
    );
    let mut times = Vec::new();
    let mut checksum = 0u64;
    for _ in 0..repeats {
        let t = Instant::now();
        let (dg, dp) = rayon::join(
            || squared_edt_at(&bg, Some(&bp), &cs, &spacing),
            || squared_edt_at(&bp, Some(&bg), &cs, &spacing),
        );
        times.push(t.elapsed().as_secs_f64() * 1e3);
        checksum = 0;
        for (i, (&q, &v)) in bp.iter().zip(&dg).enumerate() {
            if q {
                checksum = checksum.rotate_left(5) ^ v.to_bits() ^ i as u64;
            }
        }
        for (i, (&q, &v)) in bg.iter().zip(&dp).enumerate() {
            if q {
                checksum = checksum.rotate_left(5) ^ v.to_bits() ^ i as u64;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "two transforms side by side: median {:.2} ms (min {:.2}), checksum {checksum:016x}",
        times[times.len() / 2],
        times[0]
    );
}
