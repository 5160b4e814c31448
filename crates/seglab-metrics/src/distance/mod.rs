//! Surface-distance metrics (HD, HD95, ASSD, NSD) in mm with anisotropic spacing.
//!
//! Surface distances are computed once per case and every metric is derived from them (as DeepMind
//! surface-distance does). The reference libraries disagree on surfaces and percentiles; each convention is a
//! typed option here, the default first.
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crop::UnionCrop;
use crate::mask::Mask;
use crate::stats::percentile_numpy;
use crate::surface::Geometry;

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
parse_enum!(DistanceMode, "voxel" => DistanceMode::Voxel, "mesh" => DistanceMode::Mesh);

/// Between which surfaces distances are measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistanceMode {
    /// Grid points of the conventions above (boundary voxels or surfels), as the reference libraries measure.
    #[default]
    Voxel,
    /// Continuous surfaces (relaxed surface nets), area-weighted samples, exact point-to-surface distances
    /// (`mesh.rs`): close to the distances between the shapes the masks rasterise, at a higher cost.
    Mesh,
}

impl DistanceMode {
    pub fn is_voxel(&self) -> bool {
        *self == DistanceMode::Voxel
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceSettings {
    pub hd95: Hd95Convention,
    pub assd: AssdConvention,
    pub nsd: NsdConvention,
    pub nsd_tolerance_mm: f64,
    /// Absent from JSON in the default voxel mode, so that settings written before the mode existed read the same.
    #[serde(default, skip_serializing_if = "DistanceMode::is_voxel")]
    pub mode: DistanceMode,
}

impl Default for DistanceSettings {
    fn default() -> Self {
        DistanceSettings {
            hd95: Hd95Convention::default(),
            assd: AssdConvention::default(),
            nsd: NsdConvention::default(),
            nsd_tolerance_mm: 1.0,
            mode: DistanceMode::default(),
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
            percentile_numpy(&pg.distances, 95.0).max(percentile_numpy(&gp.distances, 95.0)),
        ),
        Hd95Convention::Medpy => (
            pg.max().max(gp.max()),
            percentile_numpy(&merge_sorted(&pg.distances, &gp.distances), 95.0),
        ),
        Hd95Convention::Deepmind => (
            pg.weighted_percentile(100.0)
                .max(gp.weighted_percentile(100.0)),
            pg.weighted_percentile(95.0)
                .max(gp.weighted_percentile(95.0)),
        ),
    };
    let (assd, asd_pred_to_gt, asd_gt_to_pred) = mean_distances(d, settings.assd);
    Spread {
        hd,
        hd95,
        assd,
        asd_pred_to_gt,
        asd_gt_to_pred,
    }
}

/// ASSD under `convention` and the two directed (weighted) mean distances.
fn mean_distances(d: &SurfaceDistances, convention: AssdConvention) -> (f64, f64, f64) {
    let (pg, gp) = (&d.pred_to_gt, &d.gt_to_pred);
    let (asd_pred_to_gt, asd_gt_to_pred) = (pg.mean(), gp.mean());
    let assd = match convention {
        AssdConvention::Pooled => {
            (pg.weighted_sum() + gp.weighted_sum()) / (pg.total_weight() + gp.total_weight())
        }
        AssdConvention::MeanOfDirected => 0.5 * (asd_pred_to_gt + asd_gt_to_pred),
    };
    (assd, asd_pred_to_gt, asd_gt_to_pred)
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
        (false, false) if settings.mode == DistanceMode::Mesh => {
            DistanceOutcome::Computed(mesh_metrics(&mesh_distances(cropped), settings))
        }
        (false, false) => {
            let models = surface_models(settings);
            DistanceOutcome::Computed(metrics_of(&cropped.distances(&models), settings))
        }
    }
}

/// The surface models a setting needs: HD, HD95, ASSD and the directed ASDs use the one of the HD95 convention
/// (surfels for `deepmind`, boundary voxels otherwise); NSD the one of the NSD convention (second when it differs).
fn surface_models(settings: &DistanceSettings) -> Vec<SurfaceModel> {
    let spread_model = match settings.hd95 {
        Hd95Convention::Deepmind => SurfaceModel::Surfel,
        _ => SurfaceModel::Voxel,
    };
    let nsd_model = match settings.nsd {
        NsdConvention::Deepmind => SurfaceModel::Surfel,
        NsdConvention::Voxel => SurfaceModel::Voxel,
    };
    if nsd_model == spread_model {
        vec![spread_model]
    } else {
        vec![spread_model, nsd_model]
    }
}

/// The metrics from the distances of [`surface_models`] (in its order).
fn metrics_of(d: &[SurfaceDistances], settings: &DistanceSettings) -> DistanceMetrics {
    let first = &d[0];
    let s = spread(first, settings);
    let nsd = nsd(d.get(1).unwrap_or(first), settings.nsd_tolerance_mm);
    DistanceMetrics {
        hd: s.hd,
        hd95: s.hd95,
        assd: s.assd,
        asd_pred_to_gt: s.asd_pred_to_gt,
        asd_gt_to_pred: s.asd_gt_to_pred,
        nsd,
    }
}

/// [`distance_metrics_in`] for several predictions of one case cut to one box (crops of [`UnionCrop::with_box`]):
/// the ground truth's surface elements and its distance transform are computed once for the crops that take the
/// whole-crop path, the transform read at the surface elements of each of them. The same numbers as one
/// [`distance_metrics_in`] per crop: the transform's values at its query points do not depend on which other points
/// are queried. `None` for a crop that is better scored alone (an empty mask, lesions spread out so far that the
/// per-cluster path is the faster one, or the only crop of the whole-crop path).
pub(crate) fn distance_metrics_shared(
    crops: &[UnionCrop],
    settings: &DistanceSettings,
) -> Vec<Option<DistanceOutcome>> {
    let mut out = vec![None; crops.len()];
    let Some(first) = crops.first() else {
        return out;
    };
    if settings.mode == DistanceMode::Mesh || first.gt.is_empty() {
        return out;
    }
    // Each crop's path, as `distance_metrics_in` would choose it on that crop.
    let whole: Vec<usize> = crops
        .par_iter()
        .enumerate()
        .filter(|(_, c)| !c.pred.is_empty() && c.cluster_boxes().is_none())
        .map(|(i, _)| i)
        .collect();
    if whole.len() < 2 {
        return out;
    }
    let shared: Vec<&UnionCrop> = whole.iter().map(|&i| &crops[i]).collect();
    let mut scratch = Default::default();
    let mut per_model: Vec<_> = surface_models(settings)
        .into_iter()
        .map(|m| UnionCrop::distances_sharing_gt(&shared, m, &mut scratch).into_iter())
        .collect();
    for &i in &whole {
        let d: Vec<SurfaceDistances> = per_model
            .iter_mut()
            .map(|m| m.next().expect("one per crop"))
            .collect();
        out[i] = Some(DistanceOutcome::Computed(metrics_of(&d, settings)));
    }
    out
}

mod clusters;
mod directed;
mod mesh;
pub(crate) use clusters::ClusterBoxes;
use clusters::*;
use directed::*;
use mesh::*;
#[cfg(test)]
mod tests;
