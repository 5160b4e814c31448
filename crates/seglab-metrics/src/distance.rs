//! Surface-distance metrics (HD, HD95, ASSD, NSD) in mm with anisotropic spacing.
//!
//! Surface distances are computed once per case and every metric is derived from them (as DeepMind
//! surface-distance does). The reference libraries disagree on surfaces and percentiles; each convention is a
//! typed option here, the default first.
use serde::{Deserialize, Serialize};

use crate::mask::Mask;

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

/// Surface distances between `pred` and `gt` (same shape; `gt`'s spacing is used).
pub fn distance_metrics(pred: &Mask, gt: &Mask, settings: &DistanceSettings) -> DistanceOutcome {
    match (pred.is_empty(), gt.is_empty()) {
        (true, true) => DistanceOutcome::BothEmpty,
        (true, false) => DistanceOutcome::PredEmpty,
        (false, true) => DistanceOutcome::GtEmpty,
        (false, false) => {
            let _ = settings;
            todo!("surface distances: being built on branch metrics-distance")
        }
    }
}
