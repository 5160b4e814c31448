//! Surface-distance metrics (HD, HD95, ASSD, NSD) in mm with anisotropic spacing.
//!
//! Surface distances are computed once per case and every metric is derived from them (as DeepMind
//! surface-distance does). The reference libraries disagree on surfaces and percentiles; each convention is a
//! typed option here, the default first.
use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::edt::squared_edt_at_into;
use crate::mask::Mask;
use crate::surface::{
    crop, neighbour_codes, surfel_area_table, voxel_surface, BBox, Geometry, UnionCrop,
};

/// How HD95 aggregates the two directed distance sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hd95Convention {
    /// MONAI: max of the two directed 95th percentiles (linear interpolation), voxel surfaces.
    #[default]
    Monai,
    /// MedPy: 95th percentile of both directions pooled (linear interpolation), voxel surfaces.
    Medpy,
    /// DeepMind surface-distance: surfel-area-weighted, nearest-rank, max over directions.
    Deepmind,
}

/// How ASSD averages the two directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssdConvention {
    /// Mean of all distances of both directions pooled (MedPy 0.5.2 `assd`, MONAI symmetric).
    #[default]
    Pooled,
    /// Mean of the two directed mean distances.
    MeanOfDirected,
}

/// How NSD (normalised surface Dice) weighs surface elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsdConvention {
    /// Surfel-area weighted (DeepMind surface-distance; equals MONAI `use_subvoxels=True`).
    #[default]
    Deepmind,
    /// Boundary voxel counts (MONAI default).
    Voxel,
}

macro_rules! parse_enum {
    ($t:ty, $($s:literal => $v:expr),+) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($s => Ok($v),)+
                    other => Err(format!("unknown value '{other}', expected one of: {}", [$($s),+].join(", "))),
                }
            }
        }
    };
}
parse_enum!(Hd95Convention, "monai" => Hd95Convention::Monai, "medpy" => Hd95Convention::Medpy, "deepmind" => Hd95Convention::Deepmind);
parse_enum!(AssdConvention, "pooled" => AssdConvention::Pooled, "mean-of-directed" => AssdConvention::MeanOfDirected);
parse_enum!(NsdConvention, "deepmind" => NsdConvention::Deepmind, "voxel" => NsdConvention::Voxel);

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceSettings {
    pub hd95: Hd95Convention,
    pub assd: AssdConvention,
    pub nsd: NsdConvention,
    pub nsd_tolerance_mm: f64,
}

impl Default for DistanceSettings {
    fn default() -> Self {
        DistanceSettings {
            hd95: Hd95Convention::default(),
            assd: AssdConvention::default(),
            nsd: NsdConvention::default(),
            nsd_tolerance_mm: 1.0,
        }
    }
}

/// Distance metrics of one case, in mm (NSD is a fraction in [0, 1]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceMetrics {
    pub hd: f64,
    pub hd95: f64,
    pub assd: f64,
    pub asd_pred_to_gt: f64,
    pub asd_gt_to_pred: f64,
    pub nsd: f64,
}

/// Distances are undefined when a mask is empty; the caller's empty-mask policy decides what that becomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DistanceOutcome {
    BothEmpty,
    PredEmpty,
    GtEmpty,
    Computed(DistanceMetrics),
}

/// Which surface elements distances are measured between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurfaceModel {
    /// Boundary voxels (mask XOR erosion by the face-connected cross), each weighing 1 (MedPy, MONAI).
    Voxel,
    /// Surfels on the voxel-corner grid weighted by length/area (DeepMind, MONAI `use_subvoxels=True`).
    Surfel,
}

/// Distances (mm) from every surface element of one mask to the nearest surface element of the other, sorted
/// ascending, with each element's weight (1 for voxels; contour length in mm or area in mm^2 for surfels; ties
/// in distance are ordered by weight, as DeepMind sorts `(distance, area)` pairs).
#[derive(Clone, Debug, PartialEq)]
pub struct DirectedDistances {
    pub distances: Vec<f64>,
    pub weights: Vec<f64>,
}

impl DirectedDistances {
    fn total_weight(&self) -> f64 {
        self.weights.iter().sum()
    }
    fn weighted_sum(&self) -> f64 {
        self.distances
            .iter()
            .zip(&self.weights)
            .map(|(d, w)| d * w)
            .sum()
    }
    pub fn max(&self) -> f64 {
        self.distances.last().copied().unwrap_or(f64::NAN)
    }
    /// Weighted mean distance (plain mean for voxels).
    pub fn mean(&self) -> f64 {
        self.weighted_sum() / self.total_weight()
    }
    /// Weight of the elements within `tolerance_mm` (inclusive, as all reference libraries compare `<=`).
    pub fn weight_within(&self, tolerance_mm: f64) -> f64 {
        let n = self.distances.partition_point(|&d| d <= tolerance_mm);
        self.weights[..n].iter().sum()
    }
    /// DeepMind `compute_robust_hausdorff` for one direction: the first distance whose normalised cumulative
    /// weight reaches `percent / 100` (no interpolation).
    pub fn weighted_percentile(&self, percent: f64) -> f64 {
        let n = self.distances.len();
        if n == 0 {
            return f64::INFINITY;
        }
        let total = numpy_sum(&self.weights);
        let target = percent / 100.0;
        let mut cum = 0.0;
        for (i, w) in self.weights.iter().enumerate() {
            cum += w;
            if cum / total >= target {
                return self.distances[i];
            }
        }
        self.distances[n - 1]
    }
}

/// Both directed distance lists of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct SurfaceDistances {
    pub pred_to_gt: DirectedDistances,
    pub gt_to_pred: DirectedDistances,
}

/// The directed surface distances of `pred` and `gt` under `model`, `None` when either mask is empty.
///
/// Only the bounding box of both masks is processed: every surface element lies inside it, so the nearest one
/// found on the crop is the nearest in the whole image and the EDT on the crop is exact.
pub fn surface_distances(pred: &Mask, gt: &Mask, model: SurfaceModel) -> Option<SurfaceDistances> {
    if pred.is_empty() || gt.is_empty() {
        return None;
    }
    UnionCrop::new(pred, gt).map(|c| c.distances(&[model]).remove(0))
}

impl UnionCrop {
    /// The distances of each surface model: per cluster box when the boxes cover little of the crop, else one
    /// transform of the whole crop per model.
    fn distances(&self, models: &[SurfaceModel]) -> Vec<SurfaceDistances> {
        match self.cluster_boxes() {
            Some(c) => self.distances_in_clusters(models, &c),
            None => {
                let mut scratch = Default::default();
                models
                    .iter()
                    .map(|&m| self.distances_whole(m, &mut scratch))
                    .collect()
            }
        }
    }

    /// `scratch` holds the two distance maps; passing the same pair to both models reuses their memory.
    fn distances_whole(
        &self,
        model: SurfaceModel,
        scratch: &mut [Vec<f64>; 2],
    ) -> SurfaceDistances {
        let (geo, shape) = (&self.geo, self.shape);
        let (pred, gt) = (self.pred.data(), self.gt.data());
        let (ep, eg, table) = match model {
            SurfaceModel::Voxel => (
                voxel_elements(pred, shape, geo),
                voxel_elements(gt, shape, geo),
                Vec::new(),
            ),
            SurfaceModel::Surfel => (
                surfel_elements(pred, shape, geo),
                surfel_elements(gt, shape, geo),
                surfel_area_table(geo),
            ),
        };
        let [dt_pred, dt_gt] = scratch;
        rayon::join(
            || squared_edt_at_into(&ep.border, Some(&eg.border), &shape, &geo.spacing, dt_pred),
            || squared_edt_at_into(&eg.border, Some(&ep.border), &shape, &geo.spacing, dt_gt),
        );
        let (pred_to_gt, gt_to_pred) = rayon::join(
            || directed(&ep, &table, dt_gt),
            || directed(&eg, &table, dt_pred),
        );
        SurfaceDistances {
            pred_to_gt,
            gt_to_pred,
        }
    }
}

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
    clusters: Vec<(Box3, Box3)>,
    /// Distances (mm) below this are exact inside a box.
    exact_below: f64,
}

type Box3 = ([usize; 3], [usize; 3]);

fn boxes_meet(a: &Box3, b: &Box3) -> bool {
    (0..3).all(|i| a.0[i] <= b.1[i] && b.0[i] <= a.1[i])
}

fn box_volume(b: &Box3) -> usize {
    (0..3).map(|i| b.1[i] - b.0[i] + 1).product()
}

impl UnionCrop {
    /// The cluster boxes, `None` when they would not save work: more than [`MAX_CLUSTERS`] components, or boxes
    /// covering more than a quarter of the crop (one lesion, or lesions close together).
    pub(crate) fn cluster_boxes(&self) -> Option<ClusterBoxes> {
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

    fn distances_in_clusters(
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
fn sorted(mut pairs: Vec<(f64, f64)>) -> DirectedDistances {
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

/// Surface elements of one mask on the crop grid: where they are and what each weighs.
struct Elements {
    border: Vec<bool>,
    /// Neighbourhood code per grid point, for the surfel weight; empty for voxel surfaces (weight 1).
    codes: Vec<u8>,
}

fn voxel_elements(m: &[bool], shape: [usize; 3], geo: &Geometry) -> Elements {
    Elements {
        border: voxel_surface(m, shape, geo.first_axis()),
        codes: Vec::new(),
    }
}

fn surfel_elements(m: &[bool], shape: [usize; 3], geo: &Geometry) -> Elements {
    let codes = neighbour_codes(m, shape, geo.first_axis());
    let full = if geo.ndim == 2 { 0b1111 } else { 0b1111_1111 };
    Elements {
        border: codes.par_iter().map(|&c| c != 0 && c != full).collect(),
        codes,
    }
}

fn directed(from: &Elements, table: &[f64], squared_dt_to: &[f64]) -> DirectedDistances {
    // Plain loops over large chunks: surface points are sparse and a per-element parallel filter costs more
    // than the scan itself.
    const CHUNK: usize = 1 << 16;
    let pairs: Vec<(f64, f64)> = from
        .border
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            let base = c * CHUNK;
            let mut out = Vec::new();
            for (o, &b) in chunk.iter().enumerate() {
                if b {
                    let i = base + o;
                    let w = if from.codes.is_empty() {
                        1.0
                    } else {
                        table[from.codes[i] as usize]
                    };
                    out.push((squared_dt_to[i].sqrt(), w));
                }
            }
            out
        })
        .collect();
    sorted(pairs)
}

/// `np.percentile(sorted, percent)` with the default linear method, including NumPy's two-sided lerp.
pub fn percentile_linear(sorted: &[f64], percent: f64) -> f64 {
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

/// `np.sum` of a contiguous float64 array: NumPy reduces with pairwise summation (blocks of 8 accumulators,
/// split in halves above 128 elements). DeepMind divides a sequential cumsum by this total, and the percentile
/// search compares the ratio with 0.95 exactly, so the total is reproduced bit for bit.
fn numpy_sum(a: &[f64]) -> f64 {
    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            let mut res = 0.0;
            for &x in a {
                res += x;
            }
            res
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let mut i = 8;
            while i < n - (n % 8) {
                for j in 0..8 {
                    r[j] += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            while i < n {
                res += a[i];
                i += 1;
            }
            res
        } else {
            let mut n2 = n / 2;
            n2 -= n2 % 8;
            pairwise(&a[..n2]) + pairwise(&a[n2..])
        }
    }
    pairwise(a)
}

/// Merges two ascending lists.
fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// HD, HD95, ASSD and the directed ASDs from one surface model.
struct Spread {
    hd: f64,
    hd95: f64,
    assd: f64,
    asd_pred_to_gt: f64,
    asd_gt_to_pred: f64,
}

fn spread(d: &SurfaceDistances, settings: &DistanceSettings) -> Spread {
    let (pg, gp) = (&d.pred_to_gt, &d.gt_to_pred);
    let (hd, hd95) = match settings.hd95 {
        Hd95Convention::Monai => (
            pg.max().max(gp.max()),
            percentile_linear(&pg.distances, 95.0).max(percentile_linear(&gp.distances, 95.0)),
        ),
        Hd95Convention::Medpy => (
            pg.max().max(gp.max()),
            percentile_linear(&merge_sorted(&pg.distances, &gp.distances), 95.0),
        ),
        Hd95Convention::Deepmind => (
            pg.weighted_percentile(100.0)
                .max(gp.weighted_percentile(100.0)),
            pg.weighted_percentile(95.0)
                .max(gp.weighted_percentile(95.0)),
        ),
    };
    let (asd_pred_to_gt, asd_gt_to_pred) = (pg.mean(), gp.mean());
    let assd = match settings.assd {
        AssdConvention::Pooled => {
            (pg.weighted_sum() + gp.weighted_sum()) / (pg.total_weight() + gp.total_weight())
        }
        AssdConvention::MeanOfDirected => 0.5 * (asd_pred_to_gt + asd_gt_to_pred),
    };
    Spread {
        hd,
        hd95,
        assd,
        asd_pred_to_gt,
        asd_gt_to_pred,
    }
}

/// NSD: weight of both surfaces within tolerance over the total weight of both surfaces.
pub fn nsd(d: &SurfaceDistances, tolerance_mm: f64) -> f64 {
    let (pg, gp) = (&d.pred_to_gt, &d.gt_to_pred);
    (pg.weight_within(tolerance_mm) + gp.weight_within(tolerance_mm))
        / (pg.total_weight() + gp.total_weight())
}

/// Surface distances between `pred` and `gt` (same shape; `gt`'s spacing is used).
///
/// HD, HD95, ASSD and the directed ASDs use the surface model of the HD95 convention (surfels for `deepmind`,
/// boundary voxels otherwise); NSD uses the one of the NSD convention. Each model is computed only when needed.
pub fn distance_metrics(pred: &Mask, gt: &Mask, settings: &DistanceSettings) -> DistanceOutcome {
    distance_metrics_in(UnionCrop::new(pred, gt).as_ref(), settings)
}

/// [`distance_metrics`] on the union crop of a case (`None`: both masks empty).
pub fn distance_metrics_in(
    crop: Option<&UnionCrop>,
    settings: &DistanceSettings,
) -> DistanceOutcome {
    let Some(cropped) = crop else {
        return DistanceOutcome::BothEmpty;
    };
    match (cropped.pred.is_empty(), cropped.gt.is_empty()) {
        (true, true) => DistanceOutcome::BothEmpty,
        (true, false) => DistanceOutcome::PredEmpty,
        (false, true) => DistanceOutcome::GtEmpty,
        (false, false) => {
            let spread_model = match settings.hd95 {
                Hd95Convention::Deepmind => SurfaceModel::Surfel,
                _ => SurfaceModel::Voxel,
            };
            let nsd_model = match settings.nsd {
                NsdConvention::Deepmind => SurfaceModel::Surfel,
                NsdConvention::Voxel => SurfaceModel::Voxel,
            };
            let models: &[SurfaceModel] = if nsd_model == spread_model {
                &[spread_model]
            } else {
                &[spread_model, nsd_model]
            };
            let d = cropped.distances(models);
            let first = &d[0];
            let second = d.get(1);
            let s = spread(first, settings);
            let nsd = nsd(second.unwrap_or(first), settings.nsd_tolerance_mm);
            DistanceOutcome::Computed(DistanceMetrics {
                hd: s.hd,
                hd95: s.hd95,
                assd: s.assd,
                asd_pred_to_gt: s.asd_pred_to_gt,
                asd_gt_to_pred: s.asd_gt_to_pred,
                nsd,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Ellipsoids (centre, radii in voxels) drawn on a grid; a 2D shape uses the last two coordinates.
    fn blobs(shape: &[usize], spacing: &[f64], items: &[([f64; 3], [f64; 3])]) -> Mask {
        let s3: [usize; 3] = if shape.len() == 2 {
            [1, shape[0], shape[1]]
        } else {
            [shape[0], shape[1], shape[2]]
        };
        let mut data = vec![false; s3.iter().product()];
        for (i, v) in data.iter_mut().enumerate() {
            let p = [
                (i / (s3[1] * s3[2])) as f64,
                ((i / s3[2]) % s3[1]) as f64,
                (i % s3[2]) as f64,
            ];
            *v = items
                .iter()
                .any(|(c, r)| (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() <= 1.0);
        }
        Mask::new(shape.to_vec(), spacing.to_vec(), data)
    }

    fn lift(v: &[([f64; 2], [f64; 2])]) -> Vec<([f64; 3], [f64; 3])> {
        v.iter()
            .map(|(c, r)| ([0.0, c[0], c[1]], [1.0, r[0], r[1]]))
            .collect()
    }

    /// Both surface models through the cluster boxes and through one transform of the whole crop.
    fn assert_clusters_match_whole(gt: &Mask, pred: &Mask, what: &str) -> Option<SurfaceDistances> {
        let crop = UnionCrop::new(pred, gt).unwrap();
        let clusters = crop.cluster_boxes()?;
        let models = [SurfaceModel::Voxel, SurfaceModel::Surfel];
        let boxed = crop.distances_in_clusters(&models, &clusters);
        for (model, boxed) in models.iter().zip(&boxed) {
            let whole = crop.distances_whole(*model, &mut Default::default());
            assert_eq!(boxed, &whole, "{what} {model:?}");
        }
        boxed.into_iter().next()
    }

    #[test]
    fn cluster_boxes_give_the_whole_crop_values() {
        // Lesions spread over a large volume: pairs whose prediction is shifted and resized, and one lesion only in
        // the ground truth and one only in the prediction, far from everything (their points need the grid lookup).
        let shape3 = [40usize, 130, 120];
        let spacing3 = [3.0, 0.8, 0.8];
        let gt3 = [
            ([8.0, 20.0, 20.0], [2.5, 6.0, 5.0]),
            ([20.0, 70.0, 40.0], [3.0, 8.0, 9.0]),
            ([30.0, 30.0, 90.0], [1.5, 4.0, 4.0]),
            ([36.0, 120.0, 110.0], [2.0, 5.0, 5.0]),
        ];
        let pred3 = [
            ([8.0, 21.0, 22.0], [2.0, 7.0, 5.0]),
            ([21.0, 69.0, 41.0], [3.0, 7.0, 9.0]),
            ([30.0, 31.0, 89.0], [1.5, 5.0, 3.0]),
            ([3.0, 120.0, 8.0], [1.5, 4.0, 4.0]),
        ];
        let shape2 = [260usize, 240];
        let gt2 = lift(&[
            ([30.0, 30.0], [9.0, 7.0]),
            ([120.0, 100.0], [15.0, 12.0]),
            ([250.0, 230.0], [5.0, 6.0]),
        ]);
        let pred2 = lift(&[
            ([32.0, 29.0], [8.0, 8.0]),
            ([118.0, 103.0], [14.0, 13.0]),
            ([10.0, 220.0], [4.0, 4.0]),
        ]);
        // A box reaches farther along its diagonals than its margin: a predicted disc whose box holds a
        // ground-truth disc diagonally (about 14 px away) while a nearer one (about 13 px) lies just outside the
        // box along a row. Only the margin check keeps the in-box answer from being taken. Spacing 1: margin 10 px.
        let gt_corner = lift(&[
            ([113.0, 113.0], [1.0, 1.0]),
            ([100.0, 117.0], [1.0, 1.0]),
            ([10.0, 10.0], [4.0, 4.0]),
            ([250.0, 230.0], [4.0, 4.0]),
        ]);
        let pred_corner = lift(&[
            ([100.0, 100.0], [3.0, 3.0]),
            ([11.0, 10.0], [4.0, 4.0]),
            ([250.0, 231.0], [4.0, 4.0]),
        ]);
        for (shape, spacing, gt, pred, isolated) in [
            (
                &shape3[..],
                &spacing3[..],
                gt3.to_vec(),
                pred3.to_vec(),
                true,
            ),
            (&shape2[..], &[0.7, 0.9][..], gt2, pred2, true),
            (&shape2[..], &[1.0, 1.0][..], gt_corner, pred_corner, false),
        ] {
            let (gt, pred) = (blobs(shape, spacing, &gt), blobs(shape, spacing, &pred));
            let d = assert_clusters_match_whole(&gt, &pred, &format!("{shape:?}"))
                .unwrap_or_else(|| panic!("{shape:?}: cluster boxes not used"));
            // The isolated lesions' points are farther than any box margin: the grid lookup answered them.
            let margin = UnionCrop::new(&pred, &gt)
                .unwrap()
                .cluster_boxes()
                .unwrap()
                .exact_below;
            if isolated {
                assert!(
                    d.pred_to_gt.max() > margin && d.gt_to_pred.max() > margin,
                    "{shape:?}"
                );
            }
        }
    }

    #[test]
    fn cluster_boxes_match_with_scattered_specks() {
        // Many small components a few margins apart: their boxes overlap (each cluster keeps its own box, and a box
        // holds parts of its neighbours), the case that merging boxes until disjoint turned into one box.
        let mut rng = SplitMix64::new(11);
        // Sparse enough for the boxes to cover at most a quarter of the crop (else the whole-crop path runs).
        for (trial, (shape, spacing, n_gt, n_pred)) in [
            (vec![40usize, 256, 256], vec![3.0, 0.8, 0.8], 40, 60),
            (vec![600usize, 600], vec![0.7, 1.1], 40, 60),
            (vec![64usize, 200, 200], vec![1.0, 1.0, 1.0], 20, 30),
        ]
        .into_iter()
        .enumerate()
        {
            let three = shape.len() == 3;
            let n: usize = shape.iter().product();
            let specks = |rng: &mut SplitMix64, count: usize| -> Vec<bool> {
                let mut m = vec![false; n];
                for _ in 0..count {
                    let i = rng.below(n);
                    m[i] = true;
                    // Some specks two voxels long, along the last axis.
                    if rng.uniform() < 0.5 && !(i + 1).is_multiple_of(shape[shape.len() - 1]) {
                        m[i + 1] = true;
                    }
                }
                m
            };
            let gt = Mask::new(shape.clone(), spacing.clone(), specks(&mut rng, n_gt));
            let pred = Mask::new(shape.clone(), spacing.clone(), specks(&mut rng, n_pred));
            let crop = UnionCrop::new(&pred, &gt).unwrap();
            let clusters = crop
                .cluster_boxes()
                .unwrap_or_else(|| panic!("trial {trial}: cluster boxes not used"));
            let overlapping = clusters.clusters.iter().enumerate().any(|(i, (_, a))| {
                clusters.clusters[i + 1..]
                    .iter()
                    .any(|(_, b)| boxes_meet(a, b))
            });
            assert!(overlapping, "trial {trial} (3D: {three}): no boxes overlap");
            assert_clusters_match_whole(&gt, &pred, &format!("specks trial {trial}"));
        }
    }

    #[test]
    fn cluster_boxes_match_on_random_lesion_layouts() {
        let mut rng = SplitMix64::new(7);
        let mut used = 0;
        for trial in 0..60 {
            let three = trial % 2 == 0;
            let shape: Vec<usize> = if three {
                vec![24, 70, 64]
            } else {
                vec![120, 110]
            };
            let spacing: Vec<f64> = shape.iter().map(|_| 0.5 + rng.uniform() * 2.5).collect();
            let draw = |rng: &mut SplitMix64, n: usize| -> Vec<([f64; 3], [f64; 3])> {
                (0..n)
                    .map(|_| {
                        let c: [f64; 3] = std::array::from_fn(|a| {
                            let len = if three {
                                shape[a]
                            } else if a == 0 {
                                1
                            } else {
                                shape[a - 1]
                            };
                            rng.uniform() * len as f64
                        });
                        let r: [f64; 3] = std::array::from_fn(|_| 0.6 + rng.uniform() * 4.0);
                        (
                            if three { c } else { [0.0, c[1], c[2]] },
                            if three { r } else { [1.0, r[1], r[2]] },
                        )
                    })
                    .collect()
            };
            let gt = draw(&mut rng, 1 + trial % 5);
            // Most predicted lesions near a true one, some anywhere.
            let mut pred = Vec::new();
            for (c, r) in &gt {
                if rng.uniform() < 0.8 {
                    let c = c.map(|v| v + 2.0 * rng.uniform() - 1.0);
                    let r = r.map(|v| v * (0.7 + 0.6 * rng.uniform()));
                    pred.push((c, r));
                }
            }
            let extra = draw(&mut rng, trial % 3);
            pred.extend(extra);
            let (gt, pred) = (blobs(&shape, &spacing, &gt), blobs(&shape, &spacing, &pred));
            if gt.is_empty() || pred.is_empty() {
                continue;
            }
            if assert_clusters_match_whole(&gt, &pred, &format!("trial {trial}")).is_some() {
                used += 1;
            }
        }
        assert!(used >= 15, "cluster boxes used in only {used} trials");
    }
}
