//! Exact squared Euclidean distance transform with anisotropic spacing.
//!
//! Felzenszwalb & Huttenlocher (2012), "Distance Transforms of Sampled Functions": the 1D lower envelope of
//! parabolas applied separably, one axis after the other. Linear time in the number of grid points, exact (no
//! chamfer approximation), any number of dimensions.
//!
//! The passes run over axis 0, then 1, then 2, so a squared distance is accumulated as
//! `((dx0*s0)^2 + (dx1*s1)^2) + (dx2*s2)^2`: the same sum, in the same order, as SciPy's
//! `distance_transform_edt(..., sampling=spacing)`, which the reference libraries use. Distances that land exactly
//! on a tolerance (NSD) then compare the same way.
use rayon::prelude::*;

/// Squared distance (mm^2) from every grid point to the nearest `true` point of `features`.
///
/// `shape` is row-major (last axis fastest) and `spacing[i]` is the step along axis `i`. Points get
/// `f64::INFINITY` when there is no feature at all.
pub fn squared_edt(features: &[bool], shape: &[usize], spacing: &[f64]) -> Vec<f64> {
    squared_edt_at(features, None, shape, spacing)
}

/// As [`squared_edt`], but only the points where `queries` is true are guaranteed to hold their distance (the
/// others may hold partial results). Passes after the first skip the lines (the contiguous last axis) and blocks
/// (the strided middle axes) that hold no query: surface distances are read at surface points only.
pub fn squared_edt_at(
    features: &[bool],
    queries: Option<&[bool]>,
    shape: &[usize],
    spacing: &[f64],
) -> Vec<f64> {
    let mut f = Vec::new();
    squared_edt_at_into(features, queries, shape, spacing, &mut f);
    f
}

/// As [`squared_edt_at`], writing into `out` (resized): callers that run several transforms reuse one buffer
/// instead of having the OS fault in and zero a fresh one each time (a measured fifth of a large case's time).
pub fn squared_edt_at_into(
    features: &[bool],
    queries: Option<&[bool]>,
    shape: &[usize],
    spacing: &[f64],
    out: &mut Vec<f64>,
) {
    check_grid(shape, spacing, features.len());
    if let Some(q) = queries {
        assert_eq!(q.len(), features.len(), "queries do not match shape");
    }
    if features.is_empty() {
        out.clear();
        return;
    }
    // Leading axes of length 1 (a 2D image on a 3D grid) add nothing: drop them, so that the binary first-axis pass
    // below runs along the first real axis (for 2D it replaces a strided envelope pass; 0 + x == x, so the sums
    // are unchanged).
    let skip = shape
        .iter()
        .take_while(|&&n| n == 1)
        .count()
        .min(shape.len() - 1);
    let (shape, spacing) = (&shape[skip..], &spacing[skip..]);
    // Along the first axis the input is binary, so the 1D transform is a distance count (two sweeps over whole
    // planes, contiguous in memory) instead of a lower envelope over strided lines. Same values, same rounding:
    // (step * count)^2 is what the envelope evaluates for a feature at height 0.
    first_axis_binary(features, queries, shape, spacing[0], out);
    for (axis, &step) in spacing.iter().enumerate().skip(1) {
        transform_axis(out, shape, axis, step, queries);
    }
}

/// Panics on a caller's bug: a spacing or data length that does not fit the shape.
fn check_grid(shape: &[usize], spacing: &[f64], len: usize) {
    assert_eq!(
        shape.len(),
        spacing.len(),
        "spacing rank differs from shape rank"
    );
    assert_eq!(
        shape.iter().product::<usize>(),
        len,
        "data does not match shape"
    );
}

/// Squared 1D distance along axis 0 to the nearest feature of the same line, `INFINITY` if the line has none.
///
/// Written only for the planes (`axis 0` indices) that hold a query point, which are all that later passes read
/// (see [`transform_axis`]); other planes of `f` keep whatever they held.
fn first_axis_binary(
    features: &[bool],
    queries: Option<&[bool]>,
    shape: &[usize],
    step: f64,
    f: &mut Vec<f64>,
) {
    let n0 = shape[0];
    let plane = features.len() / n0;
    let needed: Vec<bool> = (0..n0)
        .map(|i| queries.is_none_or(|q| q[i * plane..(i + 1) * plane].contains(&true)))
        .collect();
    if f.len() != features.len() {
        // Zeroed allocation (calloc): the pages of planes never written are never touched.
        *f = vec![0.0; features.len()];
    }
    // Index distance to the nearest feature before (forward sweep) and after (backward sweep), carried per column
    // through the planes; counts are small integers, exact in f64, and infinity stays infinity. Columns are
    // independent: chunks of them run in parallel, sharing `f` through a raw pointer (disjoint columns).
    const CHUNK: usize = 2048;
    let ptr = SendPtr(f.as_mut_ptr());
    let starts: Vec<usize> = (0..plane).step_by(CHUNK).collect();
    starts.par_iter().for_each(|&c0| {
        let ptr = &ptr;
        let c1 = (c0 + CHUNK).min(plane);
        // Columns c0..c1 of plane i: the only part of `f` this task touches.
        let columns = |i: usize| {
            // SAFETY: `i < n0` and `c1 <= plane`, so the range lies inside `f` (length `n0 * plane`); the chunks
            // partition the columns, so no other task makes a slice that overlaps this one, and this task drops
            // each slice before making the next.
            unsafe { std::slice::from_raw_parts_mut(ptr.0.add(i * plane + c0), c1 - c0) }
        };
        let mut carry = vec![f64::INFINITY; c1 - c0];
        for i in 0..n0 {
            let feat = &features[i * plane + c0..i * plane + c1];
            for (c, &b) in carry.iter_mut().zip(feat) {
                *c = if b { 0.0 } else { *c + 1.0 };
            }
            if needed[i] {
                columns(i).copy_from_slice(&carry);
            }
        }
        carry.fill(f64::INFINITY);
        for i in (0..n0).rev() {
            let feat = &features[i * plane + c0..i * plane + c1];
            for (c, &b) in carry.iter_mut().zip(feat) {
                *c = if b { 0.0 } else { *c + 1.0 };
            }
            if needed[i] {
                let out = columns(i);
                for (o, &c) in out.iter_mut().zip(&carry) {
                    let d = step * o.min(c);
                    *o = d * d;
                }
            }
        }
    });
}

/// In place: `f` holds 0 at features and `f64::INFINITY` elsewhere (any finite sampled function works: the
/// result is `min_p f(p) + |x - p|^2`).
pub fn squared_edt_in_place(f: &mut [f64], shape: &[usize], spacing: &[f64]) {
    check_grid(shape, spacing, f.len());
    if f.is_empty() {
        return;
    }
    for (axis, &step) in spacing.iter().enumerate() {
        transform_axis(f, shape, axis, step, None);
    }
}

/// One separable pass along `axis`.
fn transform_axis(
    f: &mut [f64],
    shape: &[usize],
    axis: usize,
    step: f64,
    queries: Option<&[bool]>,
) {
    let n = shape[axis];
    if n <= 1 {
        return;
    }
    let inner: usize = shape[axis + 1..].iter().product();
    let block = n * inner;

    if inner == 1 {
        // Contiguous lines: each is its own chunk.
        let lines = f.par_chunks_mut(n).enumerate();
        lines.for_each_init(
            || Scratch::new(n),
            |s, (l, line)| {
                let q = queries.map(|q| &q[l * n..(l + 1) * n]);
                if q.is_some_and(|q| !q.contains(&true)) {
                    return;
                }
                s.line.copy_from_slice(line);
                // This is the last pass: only the query points' values are read afterwards.
                if let Some(q) = q {
                    if nearest_at_queries(&s.line, step, line, q) {
                        return;
                    }
                }
                envelope_1d(&s.line, step, line, &mut s.v, &mut s.z, &mut s.h);
            },
        );
        return;
    }

    // Strided lines. Lines of one outer block interleave in memory, so they are handled as a batch of `inner`
    // lines: gather a group of neighbouring lines (consecutive memory along the fast axis) into a transposed
    // buffer, transform, scatter. Blocks are disjoint, so they run in parallel; when there are few blocks (axis 0)
    // the lines of one block are split into column groups instead.
    const GROUP: usize = 16;
    let outer = f.len() / block;
    // Every later pass works inside one block of this pass (its lines fix the same leading indices), so a block
    // without a query point is never read again: skip it.
    let needed = |b: usize| queries.is_none_or(|q| q[b * block..(b + 1) * block].contains(&true));
    if outer >= rayon::current_num_threads() * 2 {
        f.par_chunks_mut(block).enumerate().for_each_init(
            || Scratch::new(n * GROUP),
            |s, (b, blk)| {
                if needed(b) {
                    // SAFETY: `blk` is this task's own block of `n * inner` values.
                    unsafe { transform_block(blk.as_mut_ptr(), n, inner, 0..inner, step, s, GROUP) }
                }
            },
        );
    } else {
        for (b, blk) in f.chunks_mut(block).enumerate() {
            if !needed(b) {
                continue;
            }
            // Column groups touch disjoint columns of `blk`; share it through a raw pointer.
            let ptr = SendPtr(blk.as_mut_ptr());
            let groups: Vec<usize> = (0..inner).step_by(GROUP).collect();
            groups.par_iter().for_each_init(
                || Scratch::new(n * GROUP),
                |s, &start| {
                    let ptr = &ptr;
                    // SAFETY: `blk` holds `n * inner` values; each group touches only its columns
                    // start..start+GROUP of each row, and the groups partition the columns.
                    unsafe {
                        transform_block(
                            ptr.0,
                            n,
                            inner,
                            start..(start + GROUP).min(inner),
                            step,
                            s,
                            GROUP,
                        )
                    };
                },
            );
        }
    }
}

struct SendPtr(*mut f64);
// SAFETY: the pointer is only turned into slices of disjoint ranges, one task each (see the uses), so sharing it
// between the worker threads never gives two threads the same element.
unsafe impl Sync for SendPtr {}
// SAFETY: as for `Sync`.
unsafe impl Send for SendPtr {}

struct Scratch {
    line: Vec<f64>,
    out: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
    h: Vec<f64>,
}

impl Scratch {
    fn new(len: usize) -> Self {
        Scratch {
            line: vec![0.0; len],
            out: vec![0.0; len],
            v: vec![0; len],
            z: vec![0.0; len + 1],
            h: vec![0.0; len],
        }
    }
}

/// Transforms the lines `cols` of one block (`n` rows of `inner` values) along the rows.
/// # Safety
/// `blk` points to a block of `n * inner` values (row `i` at `blk + i * inner`), and no other thread accesses columns
/// `cols` of its rows while this runs.
unsafe fn transform_block(
    blk: *mut f64,
    n: usize,
    inner: usize,
    cols: std::ops::Range<usize>,
    step: f64,
    s: &mut Scratch,
    group: usize,
) {
    let mut c0 = cols.start;
    while c0 < cols.end {
        let g = group.min(cols.end - c0);
        // Gather: line j of the group at s.line[j*n .. (j+1)*n].
        // Only columns c0..c0+g of each row are made into a slice: other tasks may own the other columns.
        // SAFETY: inside the block (`c0 + g <= cols.end <= inner`), in this call's columns (the contract).
        let row = |i: usize| unsafe { std::slice::from_raw_parts_mut(blk.add(i * inner + c0), g) };
        for i in 0..n {
            let row = row(i);
            for (j, &x) in row.iter().enumerate() {
                s.line[j * n + i] = x;
            }
        }
        for j in 0..g {
            let (line, out) = (&s.line[j * n..(j + 1) * n], &mut s.out[j * n..(j + 1) * n]);
            envelope_1d(line, step, out, &mut s.v, &mut s.z, &mut s.h);
        }
        for i in 0..n {
            let row = row(i);
            for (j, x) in row.iter_mut().enumerate() {
                *x = s.out[j * n + i];
            }
        }
        c0 += g;
    }
}

/// `out[q] = min_p f[p] + (step * (q - p))^2` at the points where `queries` is true, by searching outwards from
/// each query until the squared step alone reaches the best value found (`f >= 0`, so no farther sample can be
/// smaller). Surface points usually lie a few voxels from the other surface, so this reads a few samples per query
/// instead of building the whole line's envelope. Returns `false` (with `out` partly written) when the search
/// would cost more than the envelope: when the first query needs more than an eighth of the line (distances on
/// this line are long), or all queries together more than twice the line; the caller then builds the envelope.
/// Each candidate is computed with the envelope's expression, so the minimum is the same number.
fn nearest_at_queries(f: &[f64], step: f64, out: &mut [f64], queries: &[bool]) -> bool {
    let n = f.len();
    let mut budget = 2 * n;
    let mut cap = (n / 8).max(8);
    for (q, _) in queries.iter().enumerate().filter(|(_, &is)| is) {
        let mut best = f[q];
        let mut r = 1;
        loop {
            let d = step * r as f64;
            let d2 = d * d;
            if d2 >= best || (r > q && q + r >= n) {
                break;
            }
            if r > cap {
                return false;
            }
            if r <= q {
                let p = q - r;
                let d = step * (q as f64 - p as f64);
                best = best.min(f[p] + d * d);
            }
            if q + r < n {
                let p = q + r;
                let d = step * (q as f64 - p as f64);
                best = best.min(f[p] + d * d);
            }
            r += 1;
        }
        out[q] = best;
        budget = budget.saturating_sub(r);
        cap = budget;
    }
    true
}

/// 1D lower envelope: `out[q] = min_p f[p] + (step * (q - p))^2`. Infinite samples carry no parabola.
fn envelope_1d(
    f: &[f64],
    step: f64,
    out: &mut [f64],
    v: &mut [usize],
    z: &mut [f64],
    h: &mut [f64],
) {
    // Apex heights in index units (f / step^2 + p^2, kept per envelope parabola in `h`), so intersections are
    // computed on the index axis.
    let inv_step2 = 1.0 / (step * step);
    let mut k: usize = 0;
    let mut any = false;
    for (q, &fq) in f.iter().enumerate() {
        if fq == f64::INFINITY {
            continue;
        }
        if !any {
            any = true;
            v[0] = q;
            h[0] = fq * inv_step2 + (q * q) as f64;
            z[0] = f64::NEG_INFINITY;
            z[1] = f64::INFINITY;
            continue;
        }
        let hq = fq * inv_step2 + (q * q) as f64;
        // z[0] = -inf, so the first parabola is never popped and k stays >= 0.
        let s = loop {
            let p = v[k];
            let s = (hq - h[k]) / (2.0 * (q - p) as f64);
            if s <= z[k] {
                k -= 1;
            } else {
                break s;
            }
        };
        k += 1;
        v[k] = q;
        h[k] = hq;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    if !any {
        out.iter_mut().for_each(|x| *x = f64::INFINITY);
        return;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let d = step * (q as f64 - p as f64);
        *o = f[p] + d * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over all feature pairs, for checking only.
    fn brute(features: &[bool], shape: &[usize], spacing: &[f64]) -> Vec<f64> {
        let coords = |mut i: usize| {
            let mut c = vec![0usize; shape.len()];
            for a in (0..shape.len()).rev() {
                c[a] = i % shape[a];
                i /= shape[a];
            }
            c
        };
        let feats: Vec<Vec<usize>> = (0..features.len())
            .filter(|&i| features[i])
            .map(coords)
            .collect();
        (0..features.len())
            .map(|i| {
                let c = coords(i);
                feats
                    .iter()
                    .map(|p| {
                        (0..shape.len())
                            .map(|a| ((c[a] as f64 - p[a] as f64) * spacing[a]).powi(2))
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn matches_brute_force_on_random_grids() {
        let mut seed = 7u64;
        for (shape, spacing) in [
            (vec![13usize], vec![0.7]),
            (vec![17, 11], vec![0.8, 1.3]),
            (vec![9, 7, 40], vec![3.0, 0.8, 0.8]),
            (vec![5, 33, 6], vec![1.0, 2.5, 0.5]),
            // Leading singleton axes (2D and 1D images on a 3D grid) are dropped before the passes.
            (vec![1, 12, 9], vec![2.0, 0.8, 1.3]),
            (vec![1, 1, 10], vec![1.0, 3.0, 0.6]),
        ] {
            for density in [2u64, 10, 100] {
                let n: usize = shape.iter().product();
                let feats: Vec<bool> = (0..n)
                    .map(|_| lcg(&mut seed).is_multiple_of(density))
                    .collect();
                let got = squared_edt(&feats, &shape, &spacing);
                let want = brute(&feats, &shape, &spacing);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-9 * w.max(1.0) || (g.is_infinite() && w.is_infinite()),
                        "{shape:?} {spacing:?}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_at_query_points_do_not_depend_on_skipping() {
        let mut seed = 3u64;
        let shape = [7usize, 9, 23];
        let spacing = [2.0, 0.9, 0.6];
        let n = shape.iter().product();
        let feats: Vec<bool> = (0..n).map(|_| lcg(&mut seed).is_multiple_of(40)).collect();
        let queries: Vec<bool> = (0..n).map(|_| lcg(&mut seed).is_multiple_of(50)).collect();
        let full = squared_edt(&feats, &shape, &spacing);
        let at = squared_edt_at(&feats, Some(&queries), &shape, &spacing);
        for i in (0..n).filter(|&i| queries[i]) {
            assert_eq!(full[i], at[i]);
        }
        // Queries in two planes only (surfaces of small, distant lesions): the other planes' middle-axis pass is
        // skipped, and features there still count. Many planes, so the parallel block branch is taken too.
        let shape = [40usize, 9, 23];
        let n: usize = shape.iter().product();
        let plane = 9 * 23;
        let feats: Vec<bool> = (0..n)
            .map(|i| i / plane == 30 && lcg(&mut seed).is_multiple_of(9))
            .collect();
        let queries: Vec<bool> = (0..n)
            .map(|i| (i / plane == 4 || i / plane == 33) && lcg(&mut seed).is_multiple_of(5))
            .collect();
        let full = squared_edt(&feats, &shape, &spacing);
        let at = squared_edt_at(&feats, Some(&queries), &shape, &spacing);
        let mut checked = 0;
        for i in (0..n).filter(|&i| queries[i]) {
            assert_eq!(full[i], at[i]);
            checked += 1;
        }
        assert!(checked > 20);
        assert!(
            (0..n).any(|i| !queries[i] && full[i] != at[i]),
            "nothing was skipped"
        );
    }

    #[test]
    fn query_search_equals_the_envelope() {
        let mut seed = 5u64;
        let (mut searched, mut gave_up) = (0, 0);
        for n in [1usize, 2, 7, 60, 300] {
            for density in [1u64, 3, 20, 1000] {
                for query_density in [1u64, 4, 50] {
                    // A previous pass's output: squared distances on a coarse grid, infinite where a column had no
                    // feature.
                    let f: Vec<f64> = (0..n)
                        .map(|_| match lcg(&mut seed) % density {
                            0 => (lcg(&mut seed) % 9) as f64 * 0.64,
                            _ => f64::INFINITY,
                        })
                        .collect();
                    let q: Vec<bool> = (0..n)
                        .map(|_| lcg(&mut seed).is_multiple_of(query_density))
                        .collect();
                    let step = 0.7;
                    let mut want = vec![0.0; n];
                    let (mut v, mut z, mut h) = (vec![0; n], vec![0.0; n + 1], vec![0.0; n]);
                    envelope_1d(&f, step, &mut want, &mut v, &mut z, &mut h);
                    let mut got = vec![f64::NAN; n];
                    if nearest_at_queries(&f, step, &mut got, &q) {
                        searched += 1;
                        for i in (0..n).filter(|&i| q[i]) {
                            assert_eq!(got[i].to_bits(), want[i].to_bits(), "n {n} at {i}");
                        }
                    } else {
                        gave_up += 1;
                    }
                }
            }
        }
        assert!(
            searched > 10 && gave_up > 0,
            "searched {searched}, gave up {gave_up}"
        );
    }

    #[test]
    fn a_reused_buffer_gives_the_fresh_result() {
        let mut seed = 11u64;
        let shape = [6usize, 10, 12];
        let spacing = [3.0, 0.8, 0.8];
        let n = shape.iter().product();
        // Dirty and longer than needed: every value must be rewritten, the length fitted.
        let mut buf = vec![-1.0f64; n + 17];
        for density in [5u64, 60, 1000] {
            let feats: Vec<bool> = (0..n)
                .map(|_| lcg(&mut seed).is_multiple_of(density))
                .collect();
            squared_edt_at_into(&feats, None, &shape, &spacing, &mut buf);
            assert_eq!(
                buf,
                squared_edt(&feats, &shape, &spacing),
                "density {density}"
            );
        }
    }

    #[test]
    fn no_feature_gives_infinity() {
        let d = squared_edt(&[false; 12], &[3, 4], &[1.0, 1.0]);
        assert!(d.iter().all(|x| x.is_infinite()));
    }

    #[test]
    fn single_feature_gives_exact_anisotropic_distances() {
        let mut feats = vec![false; 4 * 5 * 6];
        feats[(5 + 2) * 6 + 3] = true; // (1, 2, 3)
        let d = squared_edt(&feats, &[4, 5, 6], &[3.0, 0.8, 0.5]);
        // Corner (3, 4, 0): (2*3)^2 + (2*0.8)^2 + (3*0.5)^2.
        let want = 36.0 + 2.56 + 2.25;
        assert!((d[(3 * 5 + 4) * 6] - want).abs() < 1e-12);
    }
}
