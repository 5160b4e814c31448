//! The per-cluster computation of the directed distances, for lesions spread over a large union box.
use rayon::prelude::*;

use super::*;
use crate::crop::{crop, BBox, UnionCrop};
use crate::edt::squared_edt_at_into;
use crate::surface::{surfel_area_table, Geometry};

/// Lesions spread over a volume leave a union box that is mostly empty (workload (b) of the benchmark: 1.7M voxels
/// around 8k lesion voxels), and whole-box surfaces and transforms then cost far more than the lesions need. The
/// surface elements and distances are therefore computed per cluster: the components of both masks, each box grown
/// by [`CLUSTER_MARGIN_STEPS`] finest steps (at least 2 per axis) beyond the corner grid; components whose element
/// regions touch are merged, so each surface element belongs to one cluster. A cluster's own elements lie at least
/// two steps inside its box, so the box computes them exactly, with the same codes; only the box's outermost layer
/// can hold elements that differ from the whole image's (the grid ends there). A distance found inside the box is
/// therefore exact when it is shorter than the margin: every element the box lacks or gets wrong lies at least the
/// margin away. The few farther points (a lesion present in one mask only) are looked up among all of
/// the other mask's elements in a grid of buckets ([`PointCells`]). Values are the same sums as the whole-crop
/// transform's, in the same order; a test compares the two bit for bit.
const CLUSTER_MARGIN_STEPS: f64 = 10.0;

/// Disjoint boxes on the crop grid (inclusive) covering every surface element of both masks.
pub(crate) struct ClusterBoxes {
    /// Per cluster: the region that holds its surface elements (its voxels and their high corners; the regions of
    /// different clusters are disjoint), and the box around it that its transforms run on.
    pub(super) clusters: Vec<(Box3, Box3)>,
    /// Distances (mm) below this are exact inside a box.
    pub(super) exact_below: f64,
}

type Box3 = ([usize; 3], [usize; 3]);

pub(super) fn boxes_meet(a: &Box3, b: &Box3) -> bool {
    (0..3).all(|i| a.0[i] <= b.1[i] && b.0[i] <= a.1[i])
}

fn box_volume(b: &Box3) -> usize {
    (0..3).map(|i| b.1[i] - b.0[i] + 1).product()
}

impl UnionCrop {
    /// The cluster boxes, `None` when they would not save work: more than [`MAX_CLUSTERS`] components, or boxes
    /// covering more than a quarter of the crop (one lesion, or lesions close together).
    pub(crate) fn cluster_boxes(&self) -> Option<&ClusterBoxes> {
        self.clusters
            .get_or_init(|| self.compute_cluster_boxes())
            .as_ref()
    }

    fn compute_cluster_boxes(&self) -> Option<ClusterBoxes> {
        const MAX_CLUSTERS: usize = 256;
        let (geo, shape) = (&self.geo, self.shape);
        let first = geo.first_axis();
        let finest = geo.spacing[first..]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let grow: [usize; 3] = std::array::from_fn(|a| {
            if a < first {
                0
            } else {
                ((CLUSTER_MARGIN_STEPS * finest / geo.spacing[a]).ceil() as usize).max(2)
            }
        });
        let exact_below = (first..3)
            .map(|a| grow[a] as f64 * geo.spacing[a])
            .fold(f64::INFINITY, f64::min);
        let (pb, gb) = rayon::join(
            || crate::lesion::component_boxes(&self.pred),
            || crate::lesion::component_boxes(&self.gt),
        );
        if pb.len() + gb.len() > MAX_CLUSTERS {
            return None;
        }
        // A cluster's region spans its voxels and their high corners (every surface element it has); the box adds
        // `grow` steps on both sides.
        let region = |core: &Box3| -> Box3 {
            (
                core.0,
                std::array::from_fn(|a| (core.1[a] + 1).min(shape[a] - 1)),
            )
        };
        let widen = |core: &Box3| -> Box3 {
            let lo = std::array::from_fn(|a| core.0[a].saturating_sub(grow[a]));
            let hi = std::array::from_fn(|a| (core.1[a] + 1 + grow[a]).min(shape[a] - 1));
            (lo, hi)
        };
        let mut cores: Vec<Box3> = pb.into_iter().chain(gb).collect();
        // Merge until the regions are pairwise disjoint, so that each surface element belongs to one cluster (a
        // corner touching voxels of two components lies in both regions). Boxes may overlap: lesions a few steps
        // apart keep their own boxes instead of chaining into one box over the whole crop.
        loop {
            let mut merged = false;
            'outer: for i in 0..cores.len() {
                for j in i + 1..cores.len() {
                    if boxes_meet(&region(&cores[i]), &region(&cores[j])) {
                        let b = cores.swap_remove(j);
                        let a = &mut cores[i];
                        *a = (
                            std::array::from_fn(|k| a.0[k].min(b.0[k])),
                            std::array::from_fn(|k| a.1[k].max(b.1[k])),
                        );
                        merged = true;
                        break 'outer;
                    }
                }
            }
            if !merged {
                break;
            }
        }
        let clusters: Vec<(Box3, Box3)> = cores.iter().map(|c| (region(c), widen(c))).collect();
        let covered: usize = clusters.iter().map(|(_, b)| box_volume(b)).sum();
        let total: usize = shape.iter().product();
        (covered * 4 <= total).then_some(ClusterBoxes {
            clusters,
            exact_below,
        })
    }

    pub(super) fn distances_in_clusters(
        &self,
        models: &[SurfaceModel],
        clusters: &ClusterBoxes,
    ) -> Vec<SurfaceDistances> {
        let (geo, shape) = (&self.geo, self.shape);
        let table = surfel_area_table(geo);
        let limit = clusters.exact_below * clusters.exact_below;
        // Per box, per model: [pred -> gt, gt -> pred].
        let per_box: Vec<Vec<[BoxSide; 2]>> = clusters
            .clusters
            .par_iter()
            .map(|(region, b)| {
                // The box is cut out of the crop grid as the crop was cut out of the image (no padding: the box
                // already reaches past its cluster's high corners).
                let grid = Geometry {
                    shape,
                    ..geo.clone()
                };
                let bbox = BBox { lo: b.0, hi: b.1 };
                let ((pred, sub), (gt, _)) = (
                    crop(self.pred.data(), &grid, &bbox, 0),
                    crop(self.gt.data(), &grid, &bbox, 0),
                );
                let to_crop = |i: usize| -> [u32; 3] {
                    let p = [i / (sub[1] * sub[2]), (i / sub[2]) % sub[1], i % sub[2]];
                    std::array::from_fn(|a| (b.0[a] + p[a]) as u32)
                };
                // The cluster's own elements, as box indices: exact in the box (at least `grow` steps from its
                // edge), and nobody else's. Elements elsewhere in the box belong to other clusters and only serve
                // as targets of the transform.
                let own: Vec<usize> = {
                    let lo: [usize; 3] = std::array::from_fn(|a| region.0[a] - b.0[a]);
                    let hi: [usize; 3] = std::array::from_fn(|a| region.1[a] - b.0[a]);
                    let mut v = Vec::new();
                    for z in lo[0]..=hi[0] {
                        for y in lo[1]..=hi[1] {
                            let row = (z * sub[1] + y) * sub[2];
                            v.extend(row + lo[2]..=row + hi[2]);
                        }
                    }
                    v
                };
                let side = |from: &Elements, squared_dt_to: &[f64]| {
                    let mut out = BoxSide::default();
                    for &i in own.iter().filter(|&&i| from.border[i]) {
                        let w = if from.codes.is_empty() {
                            1.0
                        } else {
                            table[from.codes[i] as usize]
                        };
                        let p = to_crop(i);
                        out.points.push(p);
                        let d2 = squared_dt_to[i];
                        if d2 < limit {
                            out.pairs.push((d2.sqrt(), w));
                        } else {
                            out.far.push((p, w));
                        }
                    }
                    out
                };
                models
                    .iter()
                    .map(|model| {
                        let elements = |m: &[bool]| match model {
                            SurfaceModel::Voxel => voxel_elements(m, sub, geo),
                            SurfaceModel::Surfel => surfel_elements(m, sub, geo),
                        };
                        let (ep, eg) = (elements(&pred), elements(&gt));
                        let (mut dt_pred, mut dt_gt) = (Vec::new(), Vec::new());
                        squared_edt_at_into(
                            &ep.border,
                            Some(&eg.border),
                            &sub,
                            &geo.spacing,
                            &mut dt_pred,
                        );
                        squared_edt_at_into(
                            &eg.border,
                            Some(&ep.border),
                            &sub,
                            &geo.spacing,
                            &mut dt_gt,
                        );
                        [side(&ep, &dt_gt), side(&eg, &dt_pred)]
                    })
                    .collect()
            })
            .collect();
        // Direction 0: pred -> gt (targets are the gt points), 1: gt -> pred.
        let directed_from = |model: usize, dir: usize| -> DirectedDistances {
            let sides: Vec<&[BoxSide; 2]> = per_box.iter().map(|m| &m[model]).collect();
            let mut pairs: Vec<(f64, f64)> = Vec::new();
            for s in &sides {
                pairs.extend_from_slice(&s[dir].pairs);
            }
            if sides.iter().any(|s| !s[dir].far.is_empty()) {
                let targets: Vec<[u32; 3]> = sides
                    .iter()
                    .flat_map(|s| s[1 - dir].points.iter().copied())
                    .collect();
                let cells = PointCells::new(&targets, &geo.spacing, geo.first_axis());
                let found: Vec<Vec<(f64, f64)>> = sides
                    .par_iter()
                    .filter(|s| !s[dir].far.is_empty())
                    .map(|s| cells.nearest_of_group(&s[dir].far))
                    .collect();
                pairs.extend(found.into_iter().flatten());
            }
            sorted(pairs)
        };
        (0..models.len())
            .into_par_iter()
            .map(|m| {
                let (pred_to_gt, gt_to_pred) =
                    rayon::join(|| directed_from(m, 0), || directed_from(m, 1));
                SurfaceDistances {
                    pred_to_gt,
                    gt_to_pred,
                }
            })
            .collect()
    }
}

/// One direction's results inside one cluster box.
#[derive(Default)]
struct BoxSide {
    /// (distance, weight) of the elements whose distance is exact in the box.
    pairs: Vec<(f64, f64)>,
    /// Elements (crop-grid position, weight) that need the global lookup.
    far: Vec<([u32; 3], f64)>,
    /// Every element of this mask in the box, as a target of the other direction's global lookup.
    points: Vec<[u32; 3]>,
}

/// Sorted by distance, ties by weight (DeepMind sorts `(distance, area)` pairs).
pub(super) fn sorted(mut pairs: Vec<(f64, f64)>) -> DirectedDistances {
    pairs.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    DirectedDistances {
        distances: pairs.iter().map(|p| p.0).collect(),
        weights: pairs.iter().map(|p| p.1).collect(),
    }
}

/// Points bucketed in cells of about [`CELL_STEPS`] finest steps per side, for the exact nearest point of the few
/// query points far from every other surface (whole lesions present in one mask only). Only the occupied cells are
/// kept, each with the tight box of its points, and a query scans the cells nearest to it first, up to the first
/// whose box lies farther than the best distance so far. Distances and box bounds are summed in the transform's order
/// (`((d0 s0)^2 + (d1 s1)^2) + (d2 s2)^2`), so the values equal its values and a bound never exceeds the distance of
/// a point inside its box.
struct PointCells {
    spacing: [f64; 3],
    /// Tight box of each occupied cell and the range of its points in `points`.
    cells: Vec<([u32; 3], [u32; 3], std::ops::Range<usize>)>,
    points: Vec<[u32; 3]>,
}

const CELL_STEPS: f64 = 8.0;

impl PointCells {
    fn new(all: &[[u32; 3]], spacing: &[f64; 3], first_axis: usize) -> PointCells {
        let finest = spacing[first_axis..]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let cell: [u32; 3] =
            std::array::from_fn(|a| ((CELL_STEPS * finest / spacing[a]).round() as u32).max(1));
        let key = |p: &[u32; 3]| -> [u32; 3] { std::array::from_fn(|a| p[a] / cell[a]) };
        let mut points = all.to_vec();
        points.sort_unstable_by_key(key);
        let mut cells = Vec::new();
        let mut i = 0;
        while i < points.len() {
            let k = key(&points[i]);
            let mut j = i;
            let (mut lo, mut hi) = (points[i], points[i]);
            while j < points.len() && key(&points[j]) == k {
                let p = points[j];
                lo = std::array::from_fn(|a| lo[a].min(p[a]));
                hi = std::array::from_fn(|a| hi[a].max(p[a]));
                j += 1;
            }
            cells.push((lo, hi, i..j));
            i = j;
        }
        PointCells {
            spacing: *spacing,
            cells,
            points,
        }
    }

    /// Squared distance between boxes `alo..=ahi` and `blo..=bhi` (0 where they overlap along an axis): a lower
    /// bound, with the same monotone operations, of the distance between any two points of them.
    fn box_gap(&self, alo: &[u32; 3], ahi: &[u32; 3], blo: &[u32; 3], bhi: &[u32; 3]) -> f64 {
        let s = self.spacing;
        let gap = |a: usize| {
            let steps = blo[a]
                .saturating_sub(ahi[a])
                .max(alo[a].saturating_sub(bhi[a]));
            s[a] * steps as f64
        };
        let (g0, g1, g2) = (gap(0), gap(1), gap(2));
        (g0 * g0 + g1 * g1) + g2 * g2
    }

    fn scan(&self, q: &[u32; 3], range: std::ops::Range<usize>, best: &mut f64) {
        let s = self.spacing;
        for p in &self.points[range] {
            let d0 = s[0] * (q[0] as f64 - p[0] as f64);
            let d1 = s[1] * (q[1] as f64 - p[1] as f64);
            let d2 = s[2] * (q[2] as f64 - p[2] as f64);
            *best = best.min((d0 * d0 + d1 * d1) + d2 * d2);
        }
    }

    /// `(distance, weight)` of each query point `(position, weight)` to its nearest point (infinity without
    /// points). The queries of one cluster share their candidate cells: the cells are ordered by their distance to
    /// the box of all the queries, a lower bound for each query, and a query stops at the first cell whose bound
    /// reaches its best distance so far.
    fn nearest_of_group(&self, queries: &[([u32; 3], f64)]) -> Vec<(f64, f64)> {
        let Some(first) = queries.first() else {
            return Vec::new();
        };
        let (mut lo, mut hi) = (first.0, first.0);
        for (q, _) in queries {
            lo = std::array::from_fn(|a| lo[a].min(q[a]));
            hi = std::array::from_fn(|a| hi[a].max(q[a]));
        }
        let mut order: Vec<(f64, usize)> = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, (clo, chi, _))| (self.box_gap(&lo, &hi, clo, chi), i))
            .collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        // Queries come in raster order, so neighbours usually share their nearest cell: scanning the previous
        // query's first gives a near-final `best` at once, and most other cells are then skipped by their bound.
        let mut last: Option<usize> = None;
        queries
            .iter()
            .map(|(q, w)| {
                let mut best = f64::INFINITY;
                if let Some(c) = last {
                    self.scan(q, self.cells[c].2.clone(), &mut best);
                }
                let mut best_cell = last;
                for &(group_bound, i) in &order {
                    if group_bound >= best {
                        break;
                    }
                    let (clo, chi, range) = &self.cells[i];
                    if Some(i) != last && self.box_gap(q, q, clo, chi) < best {
                        let before = best;
                        self.scan(q, range.clone(), &mut best);
                        if best < before {
                            best_cell = Some(i);
                        }
                    }
                }
                last = best_cell;
                (best.sqrt(), *w)
            })
            .collect()
    }
}
