//! `DistanceMode::Mesh`: surface distances between continuous surfaces instead of grid points.
//!
//! The voxel conventions measure from grid points (boundary voxels or surfel corners) to the nearest grid point of
//! the other surface, which errs by several percent and, for NSD, by up to tens of points (MeshMetrics, arXiv
//! 2509.05670). Here each mask's boundary becomes a surface: a surface net (Gibson 1998, "Constrained elastic
//! surface nets": one vertex per grid cell that the boundary crosses, placed at the mean of the crossing edges'
//! midpoints, then relaxed towards its neighbours' mean without leaving its cell, which takes the staircase out of
//! smooth shapes), triangles in 3D and segments in 2D. Each primitive is sampled at its centroid, weighted by its area
//! or length, and every sample's distance to the other surface is the exact distance to its nearest primitive, found
//! through a bounding-volume hierarchy. The metrics are those of the
//! area-weighted definitions: HD the largest distance, HD95 the larger directed area-weighted 95th percentile (MedPy's
//! convention: the pooled one), ASSD the area-weighted mean (or the mean of the directed means), NSD the area within
//! the tolerance over the total area.
use rayon::prelude::*;

use super::*;
use crate::crop::UnionCrop;

/// Relaxation passes of the surface net's vertices: each moves to the mean of its neighbours, clamped to its cell.
const RELAX_PASSES: usize = 8;

type P3 = [f64; 3];

/// Triangles (3D) or segments (2D, third point equal to the second) in mm on the crop's grid.
struct Surface {
    prims: Vec<[P3; 3]>,
    segments: bool,
}

/// The boundary of `m` (crop grid `shape`, 2D when the first axis is not an image axis) as a relaxed surface net.
fn surface_net(m: &[bool], shape: [usize; 3], geo: &Geometry) -> Surface {
    let two_d = geo.ndim == 2;
    // One background layer on every side of every image axis, so that every crossing has its cells.
    let lo = if two_d { [0, 1, 1] } else { [1, 1, 1] };
    let g = [
        shape[0] + 2 * lo[0],
        shape[1] + 2 * lo[1],
        shape[2] + 2 * lo[2],
    ];
    let mut v = vec![false; g[0] * g[1] * g[2]];
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let src = (i * shape[1] + j) * shape[2];
            let dst = ((i + lo[0]) * g[1] + j + lo[1]) * g[2] + lo[2];
            v[dst..dst + shape[2]].copy_from_slice(&m[src..src + shape[2]]);
        }
    }
    let at = |i: usize, j: usize, k: usize| v[(i * g[1] + j) * g[2] + k];
    // Cells span grid points i..=i+1 along each image axis (one layer along a non-image axis).
    let c = [if two_d { 1 } else { g[0] - 1 }, g[1] - 1, g[2] - 1];
    let cell_of = |i: usize, j: usize, k: usize| (i * c[1] + j) * c[2] + k;
    let corners: Vec<[usize; 3]> = if two_d {
        vec![[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]]
    } else {
        (0..8)
            .map(|b| [(b >> 2) & 1, (b >> 1) & 1, b & 1])
            .collect()
    };
    // Edges of a cell: corner pairs that differ along one axis.
    let edges: Vec<(usize, usize)> = (0..corners.len())
        .flat_map(|a| (a + 1..corners.len()).map(move |b| (a, b)))
        .filter(|&(a, b)| (0..3).filter(|&x| corners[a][x] != corners[b][x]).count() == 1)
        .collect();
    let mut vertex = vec![u32::MAX; c[0] * c[1] * c[2]];
    let mut pos: Vec<P3> = Vec::new();
    let mut cells: Vec<[usize; 3]> = Vec::new();
    for i in 0..c[0] {
        for j in 0..c[1] {
            for k in 0..c[2] {
                let val = |q: &[usize; 3]| at(i + q[0], j + q[1], k + q[2]);
                let first = val(&corners[0]);
                if corners.iter().all(|q| val(q) == first) {
                    continue;
                }
                let (mut sum, mut n) = ([0.0; 3], 0.0);
                for &(a, b) in &edges {
                    if val(&corners[a]) != val(&corners[b]) {
                        for x in 0..3 {
                            sum[x] += 0.5 * (corners[a][x] + corners[b][x]) as f64;
                        }
                        n += 1.0;
                    }
                }
                vertex[cell_of(i, j, k)] = pos.len() as u32;
                pos.push([
                    i as f64 + sum[0] / n,
                    j as f64 + sum[1] / n,
                    k as f64 + sum[2] / n,
                ]);
                cells.push([i, j, k]);
            }
        }
    }
    // Primitives: around every grid edge whose ends differ, the cells sharing it (4 in 3D, 2 in 2D).
    let mut faces: Vec<Vec<u32>> = Vec::new();
    let axes: &[usize] = if two_d { &[1, 2] } else { &[0, 1, 2] };
    for i in 0..g[0] {
        for j in 0..g[1] {
            for k in 0..g[2] {
                for &a in axes {
                    let mut q = [i, j, k];
                    q[a] += 1;
                    if q[a] >= g[a] || at(i, j, k) == at(q[0], q[1], q[2]) {
                        continue;
                    }
                    // A lesion point lies at least one layer inside the padded grid, so the cells below the edge
                    // along the other axes exist.
                    // The cells around the edge: the edge's low point minus 0 or 1 along the other image axes.
                    let others: Vec<usize> = axes.iter().copied().filter(|&x| x != a).collect();
                    let ring: Vec<[usize; 3]> = if two_d {
                        vec![[0, 0], [1, 0]]
                            .into_iter()
                            .map(|[d, _]| {
                                let mut p = [0, j, k];
                                p[others[0]] -= d;
                                p
                            })
                            .collect()
                    } else {
                        [[0, 0], [1, 0], [1, 1], [0, 1]]
                            .into_iter()
                            .map(|[d0, d1]| {
                                let mut p = [i, j, k];
                                p[others[0]] -= d0;
                                p[others[1]] -= d1;
                                p
                            })
                            .collect()
                    };
                    faces.push(
                        ring.iter()
                            .map(|p| vertex[cell_of(p[0], p[1], p[2])])
                            .collect(),
                    );
                }
            }
        }
    }
    // Relaxation: neighbours are the vertices that share a primitive edge.
    let mut nbrs: Vec<Vec<u32>> = vec![Vec::new(); pos.len()];
    for f in &faces {
        for e in 0..f.len() {
            let (a, b) = (f[e], f[(e + 1) % f.len()]);
            if a != b && !nbrs[a as usize].contains(&b) {
                nbrs[a as usize].push(b);
                nbrs[b as usize].push(a);
            }
        }
    }
    for _ in 0..RELAX_PASSES {
        pos = (0..pos.len())
            .into_par_iter()
            .map(|p| {
                let nb = &nbrs[p];
                if nb.is_empty() {
                    return pos[p];
                }
                let cell = cells[p];
                std::array::from_fn(|x| {
                    let mean =
                        nb.iter().map(|&q| pos[q as usize][x]).sum::<f64>() / nb.len() as f64;
                    if two_d && x == 0 {
                        pos[p][0]
                    } else {
                        mean.clamp(cell[x] as f64, cell[x] as f64 + 1.0)
                    }
                })
            })
            .collect();
    }
    // Grid index (of the padded grid) to mm.
    let s = geo.spacing;
    let mm = |p: &P3| -> P3 { std::array::from_fn(|x| (p[x] - lo[x] as f64) * s[x]) };
    let prims = faces
        .iter()
        .flat_map(|f| {
            let q: Vec<P3> = f.iter().map(|&i| mm(&pos[i as usize])).collect();
            if two_d {
                vec![[q[0], q[1], q[1]]]
            } else {
                vec![[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
            }
        })
        .collect();
    Surface {
        prims,
        segments: two_d,
    }
}

fn sub(a: &P3, b: &P3) -> P3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: &P3, b: &P3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: &P3, b: &P3) -> P3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm2(a: &P3) -> f64 {
    dot(a, a)
}
fn lerp(a: &P3, b: &P3, t: f64) -> P3 {
    std::array::from_fn(|x| a[x] + t * (b[x] - a[x]))
}

/// Squared distance from `p` to the segment `a b`.
fn segment_dist2(p: &P3, a: &P3, b: &P3) -> f64 {
    let ab = sub(b, a);
    let len2 = norm2(&ab);
    let t = if len2 > 0.0 {
        (dot(&sub(p, a), &ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    norm2(&sub(p, &lerp(a, b, t)))
}

/// Squared distance from `p` to the triangle `a b c` (Ericson, Real-Time Collision Detection, 5.1.5: the Voronoi
/// region of `p`, then the closest point on that feature).
fn triangle_dist2(p: &P3, a: &P3, b: &P3, c: &P3) -> f64 {
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(p, a));
    let (d1, d2) = (dot(&ab, &ap), dot(&ac, &ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return norm2(&ap);
    }
    let bp = sub(p, b);
    let (d3, d4) = (dot(&ab, &bp), dot(&ac, &bp));
    if d3 >= 0.0 && d4 <= d3 {
        return norm2(&bp);
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return segment_dist2(p, a, b);
    }
    let cp = sub(p, c);
    let (d5, d6) = (dot(&ab, &cp), dot(&ac, &cp));
    if d6 >= 0.0 && d5 <= d6 {
        return norm2(&cp);
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return segment_dist2(p, a, c);
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        return segment_dist2(p, b, c);
    }
    let denom = va + vb + vc;
    if denom <= 0.0 {
        // Degenerate (collinear) triangle: the nearest of its edges.
        return segment_dist2(p, a, b)
            .min(segment_dist2(p, a, c))
            .min(segment_dist2(p, b, c));
    }
    let (v, w) = (vb / denom, vc / denom);
    let q: P3 = std::array::from_fn(|x| a[x] + ab[x] * v + ac[x] * w);
    norm2(&sub(p, &q))
}

/// A bounding-volume hierarchy over a surface's primitives, for the nearest primitive to a point.
struct Bvh<'a> {
    surface: &'a Surface,
    /// Primitive indices, grouped by leaf.
    order: Vec<u32>,
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    lo: P3,
    hi: P3,
    /// Leaf: `order[start..start + count]`; inner node (count 0): children `start` and `start + 1`.
    start: u32,
    count: u32,
}

const LEAF: usize = 4;

impl<'a> Bvh<'a> {
    fn new(surface: &'a Surface) -> Self {
        let bounds = |p: &[P3; 3]| -> (P3, P3) {
            (
                std::array::from_fn(|x| p[0][x].min(p[1][x]).min(p[2][x])),
                std::array::from_fn(|x| p[0][x].max(p[1][x]).max(p[2][x])),
            )
        };
        let centre: Vec<P3> = surface
            .prims
            .iter()
            .map(|p| std::array::from_fn(|x| (p[0][x] + p[1][x] + p[2][x]) / 3.0))
            .collect();
        let mut bvh = Bvh {
            surface,
            order: (0..surface.prims.len() as u32).collect(),
            nodes: vec![Node::default()],
        };
        // Iterative build: (node, range of `order`).
        let mut todo = vec![(0usize, 0usize, surface.prims.len())];
        while let Some((node, s, e)) = todo.pop() {
            let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
            for &i in &bvh.order[s..e] {
                let (a, b) = bounds(&surface.prims[i as usize]);
                for x in 0..3 {
                    lo[x] = lo[x].min(a[x]);
                    hi[x] = hi[x].max(b[x]);
                }
            }
            bvh.nodes[node].lo = lo;
            bvh.nodes[node].hi = hi;
            if e - s <= LEAF {
                bvh.nodes[node].start = s as u32;
                bvh.nodes[node].count = (e - s) as u32;
                continue;
            }
            let axis = (0..3)
                .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
                .expect("three axes");
            let mid = (s + e) / 2;
            bvh.order[s..e].select_nth_unstable_by(mid - s, |&a, &b| {
                centre[a as usize][axis].total_cmp(&centre[b as usize][axis])
            });
            let left = bvh.nodes.len();
            bvh.nodes.extend([Node::default(), Node::default()]);
            bvh.nodes[node].start = left as u32;
            todo.push((left, s, mid));
            todo.push((left + 1, mid, e));
        }
        bvh
    }

    fn box_dist2(n: &Node, p: &P3) -> f64 {
        (0..3)
            .map(|x| {
                let d = (n.lo[x] - p[x]).max(p[x] - n.hi[x]).max(0.0);
                d * d
            })
            .sum()
    }

    fn prim_dist2(&self, i: u32, p: &P3) -> f64 {
        let t = &self.surface.prims[i as usize];
        if self.surface.segments {
            segment_dist2(p, &t[0], &t[1])
        } else {
            triangle_dist2(p, &t[0], &t[1], &t[2])
        }
    }

    /// Squared distance from `p` to the nearest primitive, and that primitive. `hint` (the previous sample's nearest,
    /// usually near this one's) gives the search a tight first bound.
    fn nearest2(&self, p: &P3, hint: u32) -> (f64, u32) {
        let mut best = self.prim_dist2(hint, p);
        let mut arg = hint;
        let mut stack: Vec<(f64, u32)> = vec![(Self::box_dist2(&self.nodes[0], p), 0)];
        while let Some((d, n)) = stack.pop() {
            if d >= best {
                continue;
            }
            let node = &self.nodes[n as usize];
            if node.count > 0 {
                for &i in &self.order[node.start as usize..(node.start + node.count) as usize] {
                    let d2 = self.prim_dist2(i, p);
                    if d2 < best {
                        best = d2;
                        arg = i;
                    }
                }
            } else {
                let (a, b) = (node.start, node.start + 1);
                let (da, db) = (
                    Self::box_dist2(&self.nodes[a as usize], p),
                    Self::box_dist2(&self.nodes[b as usize], p),
                );
                // Nearer child last: popped first.
                if da < db {
                    stack.push((db, b));
                    stack.push((da, a));
                } else {
                    stack.push((da, a));
                    stack.push((db, b));
                }
            }
        }
        (best, arg)
    }
}

/// Sample points of a surface with their weights (area in mm^2, or length in mm in 2D): each primitive's centroid
/// (the midpoint rule: primitives are about a voxel across, and the distance varies smoothly along a surface).
fn samples(s: &Surface) -> Vec<(P3, f64)> {
    s.prims
        .par_iter()
        .map(|t| {
            let [a, b, c] = t;
            if s.segments {
                (lerp(a, b, 0.5), norm2(&sub(b, a)).sqrt())
            } else {
                let w = 0.5 * norm2(&cross(&sub(b, a), &sub(c, a))).sqrt();
                (std::array::from_fn(|x| (a[x] + b[x] + c[x]) / 3.0), w)
            }
        })
        .filter(|(_, w)| *w > 0.0)
        .collect()
}

fn directed_to(from: &[(P3, f64)], to: &Bvh) -> DirectedDistances {
    // Samples come in surface order (the four of a triangle, then its neighbours'): each chunk carries the last
    // nearest primitive along as the next search's first bound.
    let pairs: Vec<(f64, f64)> = from
        .par_chunks(1024)
        .flat_map_iter(|chunk| {
            let mut hint = 0;
            chunk
                .iter()
                .map(|(p, w)| {
                    let (d2, i) = to.nearest2(p, hint);
                    hint = i;
                    (d2.sqrt(), *w)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    sorted(pairs)
}

/// Both directed distance lists between the two masks' surfaces, sample weights in mm^2 (mm in 2D).
pub(super) fn mesh_distances(crop: &UnionCrop) -> SurfaceDistances {
    let (geo, shape) = (&crop.geo, crop.shape);
    let (sp, sg) = rayon::join(
        || surface_net(crop.pred.data(), shape, geo),
        || surface_net(crop.gt.data(), shape, geo),
    );
    let ((xp, bp), (xg, bg)) = rayon::join(
        || (samples(&sp), Bvh::new(&sp)),
        || (samples(&sg), Bvh::new(&sg)),
    );
    let (pred_to_gt, gt_to_pred) = rayon::join(|| directed_to(&xp, &bg), || directed_to(&xg, &bp));
    SurfaceDistances {
        pred_to_gt,
        gt_to_pred,
    }
}

/// The metrics of the area-weighted definitions (module docs) under `settings`' conventions.
pub(super) fn mesh_metrics(d: &SurfaceDistances, settings: &DistanceSettings) -> DistanceMetrics {
    let (pg, gp) = (&d.pred_to_gt, &d.gt_to_pred);
    let hd = pg.max().max(gp.max());
    let hd95 = match settings.hd95 {
        Hd95Convention::Medpy => {
            let pairs: Vec<(f64, f64)> = pg
                .distances
                .iter()
                .zip(&pg.weights)
                .chain(gp.distances.iter().zip(&gp.weights))
                .map(|(&x, &w)| (x, w))
                .collect();
            sorted(pairs).weighted_percentile(95.0)
        }
        _ => pg
            .weighted_percentile(95.0)
            .max(gp.weighted_percentile(95.0)),
    };
    let (assd, asd_pred_to_gt, asd_gt_to_pred) = mean_distances(d, settings.assd);
    DistanceMetrics {
        hd,
        hd95,
        assd,
        asd_pred_to_gt,
        asd_gt_to_pred,
        nsd: nsd(d, settings.nsd_tolerance_mm),
    }
}
