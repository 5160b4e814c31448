//! Evaluation of one case (prediction vs ground truth): every metric of `seglab evaluate`, with the empty-mask
//! policy applied. Training validation does not call this (it pools counts over images instead of scoring cases:
//! `crate::pooled`), but both are built on the same counts ([`Confusion`], `LesionCounts`) and the same binarisation,
//! so a metric means the same thing in both.
//!
//! Empty masks never crash and never silently become a number. A metric that is undefined (0/0, or a surface
//! distance with an empty surface) is settled by [`EmptyPolicy`]:
//! - `default`: both masks empty -> overlap and lesion scores (dice, iou, precision, recall, ...) = 1, distances
//!   = 0, nsd = 1. Exactly one empty -> undefined overlap scores = 0 (so dice = 0), distances stay null with the
//!   status `"undefined: empty prediction"` / `"undefined: empty ground truth"`, nsd = 0 (no surface within
//!   tolerance).
//! - `nan`: every undefined value is null (NaN) and left out of the summary statistics of that metric.
//! - `skip`: as `nan`, and a case with an empty mask is left out of every summary statistic.
//! - `worst`: every undefined value gets its worst value: 0 for scores, the image diagonal (mm) for distances.
//!
//! The case's `status.policy` lists the metrics whose value the policy set.
use rayon::prelude::*;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::brats::{lesion_wise, BratsSettings, LesionWise, MISS_HD95_MM};
use crate::confusion::Confusion;
use crate::crop::{merge, union_bbox, UnionCrop};
use crate::distance::{
    distance_metrics_in, distance_metrics_shared, DistanceOutcome, DistanceSettings, Hd95Convention,
};
use crate::instances::{instances_in, InstanceSettings, Instances};
use crate::lesion::{lesion_metrics_in, LesionDice, LesionSettings};
use crate::mask::{Mask, ProbMap};

/// What an undefined metric becomes; see the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    #[default]
    Default,
    Nan,
    Skip,
    Worst,
}

impl std::str::FromStr for EmptyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(EmptyPolicy::Default),
            "nan" => Ok(EmptyPolicy::Nan),
            "skip" => Ok(EmptyPolicy::Skip),
            "worst" => Ok(EmptyPolicy::Worst),
            other => Err(format!(
                "unknown empty policy '{other}', expected one of: default, nan, skip, worst"
            )),
        }
    }
}

/// Everything that changes a case's metrics. Serialised into the JSON `settings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Predictions are lesion where `p >= threshold`.
    pub threshold: f32,
    /// F-beta's beta.
    pub beta: f64,
    pub tversky_alpha: f64,
    pub tversky_beta: f64,
    /// Compute surface distances (hd, hd95, assd, asd_*, nsd); when false they are null with status "not computed".
    pub distances: bool,
    pub distance: DistanceSettings,
    pub lesion: LesionSettings,
    pub empty_policy: EmptyPolicy,
    /// BraTS 2023 lesion-wise scores (`crate::brats`); the whole-mask HD95 then follows the reference (DeepMind
    /// convention, 374 mm with one mask empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lesion_wise: Option<BratsSettings>,
    /// Panoptic instance matching (`crate::instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceSettings>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            threshold: 0.5,
            beta: 1.0,
            tversky_alpha: 0.5,
            tversky_beta: 0.5,
            distances: true,
            distance: DistanceSettings::default(),
            lesion: LesionSettings::default(),
            empty_policy: EmptyPolicy::default(),
            lesion_wise: None,
            instances: None,
        }
    }
}

macro_rules! metrics {
    ($($field:ident => $key:literal),+ $(,)?) => {
        /// All scalar metrics of one case; `None` is undefined (JSON null).
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct Metrics {
            $(pub $field: Option<f64>,)+
        }
        impl Metrics {
            /// JSON keys, in output order.
            pub const NAMES: &'static [&'static str] = &[$($key),+];
            pub fn entries(&self) -> Vec<(&'static str, Option<f64>)> {
                vec![$(($key, self.$field)),+]
            }
            pub fn get(&self, key: &str) -> Option<Option<f64>> {
                match key {
                    $($key => Some(self.$field),)+
                    _ => None,
                }
            }
            fn slot(&mut self, key: &str) -> &mut Option<f64> {
                match key {
                    $($key => &mut self.$field,)+
                    other => panic!("no metric {other}"),
                }
            }
        }
    };
}

metrics! {
    tp => "tp", fp => "fp", fn_ => "fn", tn => "tn", gt_volume => "gt_volume", pred_volume => "pred_volume",
    dice => "dice", iou => "iou", precision => "precision", recall => "recall", specificity => "specificity",
    accuracy => "accuracy", balanced_accuracy => "balanced_accuracy", mcc => "mcc", f_beta => "f_beta",
    tversky_index => "tversky_index", volume_similarity => "volume_similarity",
    abs_volume_difference => "abs_volume_difference",
    hd => "hd", hd95 => "hd95", assd => "assd", asd_pred_to_gt => "asd_pred_to_gt",
    asd_gt_to_pred => "asd_gt_to_pred", nsd => "nsd",
    gt_lesions => "gt_lesions", pred_lesions => "pred_lesions", lesions_detected => "lesions_detected",
    lesions_missed => "lesions_missed", false_positive_lesions => "false_positive_lesions",
    lesion_recall => "lesion_recall", lesion_precision => "lesion_precision", lesion_f1 => "lesion_f1",
}

/// The JSON form read back: every key of [`Metrics::NAMES`] may be present (null is undefined); unknown keys are an
/// error.
impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: std::collections::BTreeMap<String, Option<f64>> = Deserialize::deserialize(d)?;
        let mut m = Metrics::default();
        for (k, v) in map {
            if !Metrics::NAMES.contains(&k.as_str()) {
                return Err(serde::de::Error::custom(format!("unknown metric '{k}'")));
            }
            *m.slot(&k) = v;
        }
        Ok(m)
    }
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut map = s.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            map.serialize_entry(k, &v.filter(|x| x.is_finite()))?;
        }
        map.end()
    }
}

const OVERLAP_SCORES: [&str; 9] = [
    "dice",
    "iou",
    "precision",
    "recall",
    "balanced_accuracy",
    "mcc",
    "f_beta",
    "tversky_index",
    "volume_similarity",
];
const LESION_SCORES: [&str; 3] = ["lesion_recall", "lesion_precision", "lesion_f1"];
const DISTANCES: [&str; 5] = ["hd", "hd95", "assd", "asd_pred_to_gt", "asd_gt_to_pred"];

/// Whether a higher value of metric `key` is better (`Some(true)`: overlap, lesion-wise and surface scores;
/// `Some(false)`: distances and volume errors), or `None` for counts, which no comparison ranks.
pub fn higher_is_better(key: &str) -> Option<bool> {
    if OVERLAP_SCORES.contains(&key)
        || LESION_SCORES.contains(&key)
        || ["nsd", "specificity", "accuracy"].contains(&key)
    {
        Some(true)
    } else if DISTANCES.contains(&key) || key == "abs_volume_difference" {
        Some(false)
    } else {
        None
    }
}

/// Which of the two masks are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emptiness {
    None,
    Both,
    Prediction,
    GroundTruth,
}

impl Emptiness {
    pub fn of(pred_empty: bool, gt_empty: bool) -> Self {
        match (pred_empty, gt_empty) {
            (false, false) => Emptiness::None,
            (true, true) => Emptiness::Both,
            (true, false) => Emptiness::Prediction,
            (false, true) => Emptiness::GroundTruth,
        }
    }
}

/// How a case's metrics came about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseStatus {
    pub empty: Emptiness,
    /// "computed", "not computed", "both empty", "undefined: empty prediction" or "undefined: empty ground truth".
    pub distances: String,
    /// Metrics whose value the empty-mask policy set (they were undefined).
    pub policy: Vec<String>,
    /// False when the `skip` policy leaves this case out of the summary.
    pub in_summary: bool,
}

/// One evaluated case: the JSON `cases[i]` object (read back by `seglab merge` and the Python `Evaluator`'s states).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub case: String,
    pub shape: Vec<usize>,
    pub spacing: Vec<f64>,
    pub metrics: Metrics,
    pub status: CaseStatus,
    /// Per ground-truth lesion, largest first: size (voxels), Dice, detected.
    pub lesions: Vec<LesionDice>,
    /// With `EvalSettings::lesion_wise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lesionwise: Option<LesionWise>,
    /// With `EvalSettings::instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
}

/// Pred and gt must have the same shape, and the same spacing within `1e-3` mm unless `ignore_spacing`.
pub fn check_geometry(
    pred: (&[usize], &[f64]),
    gt: (&[usize], &[f64]),
    ignore_spacing: bool,
) -> Result<(), String> {
    if pred.0 != gt.0 {
        return Err(format!(
            "shape mismatch: prediction {:?}, ground truth {:?}",
            pred.0, gt.0
        ));
    }
    if !ignore_spacing && pred.1.iter().zip(gt.1).any(|(a, b)| (a - b).abs() > 1e-3) {
        return Err(format!(
            "spacing mismatch: prediction {:?} mm, ground truth {:?} mm (--ignore-spacing-mismatch uses the ground truth's)",
            pred.1, gt.1
        ));
    }
    Ok(())
}

/// Evaluate a probability map: binarised with `p >= settings.threshold`.
pub fn evaluate_probs(
    case: &str,
    pred: &ProbMap,
    gt: &Mask,
    settings: &EvalSettings,
) -> Result<CaseResult, String> {
    if pred.shape() != gt.shape() {
        return Err(format!(
            "shape mismatch: prediction {:?}, ground truth {:?}",
            pred.shape(),
            gt.shape()
        ));
    }
    let mask = pred
        .threshold(settings.threshold)
        .with_spacing(gt.spacing().to_vec());
    evaluate_masks(case, &mask, gt, settings)
}

/// Evaluate a binary prediction against the ground truth (gt's spacing is used for volumes and distances).
pub fn evaluate_masks(
    case: &str,
    pred: &Mask,
    gt: &Mask,
    settings: &EvalSettings,
) -> Result<CaseResult, String> {
    if pred.shape() != gt.shape() {
        return Err(format!(
            "shape mismatch: prediction {:?}, ground truth {:?}",
            pred.shape(),
            gt.shape()
        ));
    }
    let pred = with_spacing_of(pred, gt);
    score(case, &pred, gt, UnionCrop::new(&pred, gt), None, settings)
}

/// `pred` with `gt`'s spacing (volumes and distances use the ground truth's), copied only when it differs.
fn with_spacing_of<'a>(pred: &'a Mask, gt: &Mask) -> std::borrow::Cow<'a, Mask> {
    if pred.spacing() != gt.spacing() {
        std::borrow::Cow::Owned(pred.clone().with_spacing(gt.spacing().to_vec()))
    } else {
        std::borrow::Cow::Borrowed(pred)
    }
}

/// [`evaluate_masks`] of several predictions of one case (a comparison of models): the same results, with the
/// ground truth's surface elements and distance transform computed once for all of them. All predictions are cut to
/// one box (the union of every mask's), on which the transform of the ground truth is read at each prediction's
/// surface; the crop changes no number (the box only needs to hold every lesion voxel).
pub fn evaluate_masks_many(
    case: &str,
    preds: &[&Mask],
    gt: &Mask,
    settings: &EvalSettings,
) -> Vec<Result<CaseResult, String>> {
    let alone = || -> Vec<Result<CaseResult, String>> {
        preds
            .par_iter()
            .map(|p| evaluate_masks(case, p, gt, settings))
            .collect()
    };
    if preds.len() < 2 || !settings.distances || preds.iter().any(|p| p.shape() != gt.shape()) {
        return alone();
    }
    let geo = crate::surface::Geometry::of(gt);
    let bbox = preds
        .par_iter()
        .map(|p| union_bbox(p.data(), gt.data(), geo.shape))
        .reduce(|| None, merge);
    let Some(bbox) = bbox else {
        return alone();
    };
    let spaced: Vec<std::borrow::Cow<Mask>> =
        preds.iter().map(|p| with_spacing_of(p, gt)).collect();
    let crops: Vec<UnionCrop> = spaced
        .par_iter()
        .map(|p| UnionCrop::with_box(p, gt, &bbox))
        .collect();
    // Crops without shared distances (an empty mask, lesions far apart) are scored as `evaluate_masks` scores them.
    let outcomes = distance_metrics_shared(&crops, &distance_settings(settings));
    crops
        .into_par_iter()
        .zip(outcomes)
        .zip(&spaced)
        .map(|((crop, d), p)| score(case, p, gt, Some(crop), d, settings))
        .collect()
}

/// The distance conventions a case is scored with: BraTS scores its whole-mask HD95 in DeepMind's convention.
fn distance_settings(settings: &EvalSettings) -> DistanceSettings {
    match settings.lesion_wise {
        Some(_) => DistanceSettings {
            hd95: Hd95Convention::Deepmind,
            ..settings.distance
        },
        None => settings.distance,
    }
}

/// Every metric of one case from its crop (`None`: both masks empty) and, when already computed, its distances.
fn score(
    case: &str,
    pred: &Mask,
    gt: &Mask,
    crop: Option<UnionCrop>,
    distances: Option<DistanceOutcome>,
    settings: &EvalSettings,
) -> Result<CaseResult, String> {
    // Outside the union's bounding box every voxel is a true negative: count inside the crop only.
    let c = match &crop {
        Some(crop) => {
            let mut c = Confusion::from_masks(crop.pred.data(), crop.gt.data());
            // The crop carries one padding voxel per axis, so it can hold more voxels than the image (a union that
            // touches the image's far edges); its padding voxels are true negatives already counted, which keeps
            // this sum from going below zero.
            c.tn = c.tn + pred.len() as u64 - crop.pred.len() as u64;
            c
        }
        None => Confusion {
            tn: pred.len() as u64,
            ..Default::default()
        },
    };
    let voxel = gt.voxel_volume();
    let emptiness = Emptiness::of(c.pred_count() == 0, c.gt_count() == 0);
    let mut m = Metrics {
        tp: Some(c.tp as f64),
        fp: Some(c.fp as f64),
        fn_: Some(c.fn_ as f64),
        tn: Some(c.tn as f64),
        gt_volume: Some(c.gt_count() as f64 * voxel),
        pred_volume: Some(c.pred_count() as f64 * voxel),
        dice: c.dice(),
        iou: c.iou(),
        precision: c.precision(),
        recall: c.recall(),
        specificity: c.specificity(),
        accuracy: c.accuracy(),
        balanced_accuracy: c.balanced_accuracy(),
        mcc: c.mcc(),
        f_beta: c.f_beta(settings.beta),
        tversky_index: c.tversky_index(settings.tversky_alpha, settings.tversky_beta),
        volume_similarity: c.volume_similarity(),
        abs_volume_difference: Some((c.pred_count() as f64 - c.gt_count() as f64).abs() * voxel),
        ..Default::default()
    };

    // The same crop serves both; distances and lesion components are independent: on a single large case they
    // take both cores.
    let distance = distance_settings(settings);
    let ((distances, lesion_wise), (lesions, instances)) = rayon::join(
        || {
            rayon::join(
                || {
                    settings.distances.then(|| {
                        distances.unwrap_or_else(|| distance_metrics_in(crop.as_ref(), &distance))
                    })
                },
                || settings.lesion_wise.map(|s| lesion_wise(pred, gt, &s)),
            )
        },
        || {
            rayon::join(
                || lesion_metrics_in(crop.as_ref(), gt.ndim(), &settings.lesion),
                || {
                    settings
                        .instances
                        .map(|s| instances_in(crop.as_ref(), gt.ndim(), &settings.lesion, &s))
                        .transpose()
                },
            )
        },
    );
    let instances = instances?;
    let distances_status = match distances {
        None => "not computed".to_string(),
        Some(outcome) => match outcome {
            DistanceOutcome::Computed(d) => {
                m.hd = Some(d.hd);
                m.hd95 = Some(d.hd95);
                m.assd = Some(d.assd);
                m.asd_pred_to_gt = Some(d.asd_pred_to_gt);
                m.asd_gt_to_pred = Some(d.asd_gt_to_pred);
                m.nsd = Some(d.nsd);
                "computed".into()
            }
            DistanceOutcome::BothEmpty => "both empty".into(),
            DistanceOutcome::PredEmpty => "undefined: empty prediction".into(),
            DistanceOutcome::GtEmpty => "undefined: empty ground truth".into(),
        },
    };

    let lesions = lesions?;
    m.gt_lesions = Some(lesions.gt_lesions as f64);
    m.pred_lesions = Some(lesions.pred_lesions as f64);
    m.lesions_detected = Some(lesions.lesions_detected as f64);
    m.lesions_missed = Some(lesions.lesions_missed as f64);
    m.false_positive_lesions = Some(lesions.false_positive_lesions as f64);
    m.lesion_recall = lesions.lesion_recall();
    m.lesion_precision = lesions.lesion_precision();
    m.lesion_f1 = lesions.lesion_f1();
    // Lesion scores are undefined when there are no components, which --min-lesion-size can cause on a
    // non-empty mask: their emptiness is judged on the component counts.
    let lesion_emptiness = Emptiness::of(lesions.pred_lesions == 0, lesions.gt_lesions == 0);

    let diagonal = gt
        .shape()
        .iter()
        .zip(gt.spacing())
        .map(|(&n, &s)| (n as f64 * s).powi(2))
        .sum::<f64>()
        .sqrt();
    let policy = settings.empty_policy;
    let mut set_by_policy = Vec::new();
    let mut settle =
        |m: &mut Metrics, key: &str, emptiness: Emptiness, perfect: f64, worst: Option<f64>| {
            let slot = m.slot(key);
            if slot.is_some() || emptiness == Emptiness::None {
                return;
            }
            let value = match policy {
                EmptyPolicy::Nan | EmptyPolicy::Skip => None,
                EmptyPolicy::Worst => worst,
                EmptyPolicy::Default if emptiness == Emptiness::Both => Some(perfect),
                // One mask empty: scores are 0; distances (worst = None here) stay undefined.
                EmptyPolicy::Default => worst.filter(|_| perfect == 1.0),
            };
            if value.is_some() {
                *slot = value;
                set_by_policy.push(key.to_string());
            }
        };
    for key in OVERLAP_SCORES {
        settle(&mut m, key, emptiness, 1.0, Some(0.0));
    }
    for key in LESION_SCORES {
        settle(&mut m, key, lesion_emptiness, 1.0, Some(0.0));
    }
    if settings.distances {
        for key in DISTANCES {
            let worst = if policy == EmptyPolicy::Worst {
                Some(diagonal)
            } else {
                None
            };
            settle(&mut m, key, emptiness, 0.0, worst);
        }
        settle(&mut m, "nsd", emptiness, 1.0, Some(0.0));
        // The reference's legacy HD95 with one mask empty (infinity, written as 374), whatever the policy.
        if lesion_wise.is_some()
            && matches!(emptiness, Emptiness::Prediction | Emptiness::GroundTruth)
        {
            m.hd95 = Some(MISS_HD95_MM);
            if !set_by_policy.iter().any(|k| k == "hd95") {
                set_by_policy.push("hd95".into());
            }
        }
    }
    let in_summary = !(policy == EmptyPolicy::Skip && emptiness != Emptiness::None);
    Ok(CaseResult {
        case: case.to_string(),
        shape: gt.shape().to_vec(),
        spacing: gt.spacing().to_vec(),
        metrics: m,
        status: CaseStatus {
            empty: emptiness,
            distances: distances_status,
            policy: set_by_policy,
            in_summary,
        },
        lesions: lesions.lesions,
        lesionwise: lesion_wise,
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_but_the_counts_has_a_direction() {
        let counts = [
            "tp",
            "fp",
            "fn",
            "tn",
            "gt_volume",
            "pred_volume",
            "gt_lesions",
            "pred_lesions",
            "lesions_detected",
            "lesions_missed",
            "false_positive_lesions",
        ];
        for name in Metrics::NAMES {
            assert_eq!(
                higher_is_better(name).is_none(),
                counts.contains(name),
                "{name}"
            );
        }
        assert_eq!(higher_is_better("hd95"), Some(false));
        assert_eq!(higher_is_better("nsd"), Some(true));
        assert_eq!(higher_is_better("nope"), None);
    }

    /// Ellipsoids (centre, radii in voxels) on a 3D grid, plus scattered specks.
    fn blobs(
        shape: [usize; 3],
        spacing: &[f64],
        balls: &[([f64; 3], [f64; 3])],
        specks: usize,
        seed: u64,
    ) -> Mask {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut data = vec![false; shape.iter().product()];
        for (i, v) in data.iter_mut().enumerate() {
            let p = [
                i / (shape[1] * shape[2]),
                (i / shape[2]) % shape[1],
                i % shape[2],
            ];
            *v = balls.iter().any(|(c, r)| {
                (0..3)
                    .map(|a| ((p[a] as f64 - c[a]) / r[a]).powi(2))
                    .sum::<f64>()
                    <= 1.0
            });
        }
        for _ in 0..specks {
            let i = rng.below(data.len());
            data[i] = true;
        }
        let off = if shape[0] == 1 { 1 } else { 0 };
        Mask::new(shape[off..].to_vec(), spacing.to_vec(), data)
    }

    /// Several predictions scored together (ground-truth side shared) give what each gives alone, bit for bit, in
    /// 2D and 3D, under every surface model combination; an empty prediction and lesions spread far apart fall back
    /// to the per-prediction path with the same results.
    #[test]
    fn predictions_scored_together_equal_each_alone() {
        let sp3 = [3.0, 0.8, 0.8];
        let shape3 = [14, 48, 40];
        let gt3 = blobs(shape3, &sp3, &[([7.0, 24.0, 20.0], [4.0, 12.0, 9.0])], 0, 1);
        let preds3 = [
            blobs(
                shape3,
                &sp3,
                &[([7.5, 27.0, 18.0], [5.0, 11.0, 10.0])],
                0,
                2,
            ),
            blobs(
                shape3,
                &sp3,
                &[([6.0, 20.0, 22.0], [3.0, 14.0, 7.0])],
                30,
                3,
            ),
            blobs(shape3, &sp3, &[([7.0, 10.0, 10.0], [2.0, 5.0, 5.0])], 5, 4),
        ];
        let sp2 = [0.7, 1.1];
        let shape2 = [1, 90, 70];
        let gt2 = blobs(
            shape2,
            &sp2,
            &[
                ([0.0, 40.0, 30.0], [1.0, 20.0, 15.0]),
                ([0.0, 70.0, 55.0], [1.0, 6.0, 6.0]),
            ],
            0,
            5,
        );
        let preds2 = [
            blobs(
                shape2,
                &sp2,
                &[([0.0, 43.0, 28.0], [1.0, 18.0, 17.0])],
                12,
                6,
            ),
            blobs(
                shape2,
                &sp2,
                &[
                    ([0.0, 38.0, 33.0], [1.0, 21.0, 12.0]),
                    ([0.0, 72.0, 52.0], [1.0, 5.0, 7.0]),
                ],
                0,
                7,
            ),
        ];
        let conventions = [
            DistanceSettings::default(),
            DistanceSettings {
                hd95: Hd95Convention::Medpy,
                nsd_tolerance_mm: 2.5,
                ..Default::default()
            },
            DistanceSettings {
                hd95: Hd95Convention::Deepmind,
                ..Default::default()
            },
            DistanceSettings {
                nsd: crate::distance::NsdConvention::Voxel,
                ..Default::default()
            },
        ];
        let check = |preds: &[&Mask], gt: &Mask, settings: &EvalSettings, shared: usize| {
            let geo = crate::surface::Geometry::of(gt);
            let bbox = preds
                .iter()
                .map(|p| union_bbox(p.data(), gt.data(), geo.shape))
                .fold(None, merge)
                .unwrap();
            let crops: Vec<UnionCrop> = preds
                .iter()
                .map(|p| UnionCrop::with_box(p, gt, &bbox))
                .collect();
            assert_eq!(
                distance_metrics_shared(&crops, &settings.distance)
                    .iter()
                    .filter(|d| d.is_some())
                    .count(),
                shared,
                "crops sharing the ground truth's side"
            );
            let together = evaluate_masks_many("c", preds, gt, settings);
            for (p, t) in preds.iter().zip(together) {
                let alone = evaluate_masks("c", p, gt, settings).unwrap();
                let t = t.unwrap();
                assert_eq!(t.status.distances, "computed");
                assert_eq!(format!("{t:?}"), format!("{alone:?}"));
            }
        };
        for distance in conventions {
            let settings = EvalSettings {
                distance,
                ..Default::default()
            };
            check(&preds3.iter().collect::<Vec<_>>(), &gt3, &settings, 3);
            check(&preds2.iter().collect::<Vec<_>>(), &gt2, &settings, 2);
        }
        // Lesions far apart in a large grid: the per-cluster path, each prediction alone.
        let shape = [40, 120, 120];
        let far = |c: [f64; 2], seed| {
            blobs(
                shape,
                &sp3,
                &[
                    ([5.0, c[0], c[1]], [2.0, 3.0, 3.0]),
                    ([34.0, 110.0 - c[0], 100.0 - c[1]], [2.0, 3.0, 3.0]),
                ],
                0,
                seed,
            )
        };
        let (g, p1, p2) = (
            far([10.0, 10.0], 8),
            far([11.0, 9.0], 9),
            far([9.0, 12.0], 10),
        );
        check(&[&p1, &p2], &g, &EvalSettings::default(), 0);
        // Mixed: two predictions speckled all over (more components than the cluster path takes) share the ground
        // truth's side; the one with two lesions keeps its cluster path.
        let speckled = |seed| {
            let mut m = far([10.0, 11.0], seed);
            let mut rng = crate::rng::SplitMix64::new(seed);
            let len = m.len();
            let mut data = m.data().to_vec();
            for _ in 0..400 {
                data[rng.below(len)] = true;
            }
            m = Mask::new(m.shape().to_vec(), m.spacing().to_vec(), data);
            m
        };
        let (s1, s2) = (speckled(11), speckled(12));
        check(&[&p1, &s1, &s2], &g, &EvalSettings::default(), 2);
        // An empty prediction: scored alone (its distances are undefined).
        let empty = Mask::new(gt3.shape().to_vec(), sp3.to_vec(), vec![false; gt3.len()]);
        let together =
            evaluate_masks_many("c", &[&preds3[0], &empty], &gt3, &EvalSettings::default());
        assert_eq!(
            format!("{:?}", together[1].as_ref().unwrap()),
            format!(
                "{:?}",
                evaluate_masks("c", &empty, &gt3, &EvalSettings::default()).unwrap()
            )
        );
        assert_eq!(
            together[1].as_ref().unwrap().status.distances,
            "undefined: empty prediction"
        );
    }

    fn no_dist(policy: EmptyPolicy) -> EvalSettings {
        EvalSettings {
            distances: false,
            empty_policy: policy,
            ..Default::default()
        }
    }

    fn mask(data: &[u8]) -> Mask {
        Mask::new(
            vec![2, 3],
            vec![0.5, 2.0],
            data.iter().map(|&v| v != 0).collect(),
        )
    }

    #[test]
    fn counts_volumes_and_scores() {
        let r = evaluate_masks(
            "a",
            &mask(&[1, 1, 0, 0, 1, 0]),
            &mask(&[1, 0, 1, 0, 1, 0]),
            &no_dist(EmptyPolicy::Default),
        )
        .unwrap();
        let m = &r.metrics;
        assert_eq!(
            (m.tp, m.fp, m.fn_, m.tn),
            (Some(2.0), Some(1.0), Some(1.0), Some(2.0))
        );
        assert_eq!(
            (m.gt_volume, m.pred_volume, m.abs_volume_difference),
            (Some(3.0), Some(3.0), Some(0.0))
        );
        assert!((m.dice.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.status.empty, Emptiness::None);
        assert_eq!(r.status.distances, "not computed");
        assert_eq!(m.hd95, None);
        assert!(r.status.policy.is_empty());
    }

    #[test]
    fn both_empty_under_each_policy() {
        let e = mask(&[0; 6]);
        let d = evaluate_masks("e", &e, &e, &EvalSettings::default()).unwrap();
        let m = &d.metrics;
        assert_eq!(
            (m.dice, m.iou, m.precision, m.recall),
            (Some(1.0), Some(1.0), Some(1.0), Some(1.0))
        );
        assert_eq!(
            (m.hd, m.hd95, m.assd, m.nsd),
            (Some(0.0), Some(0.0), Some(0.0), Some(1.0))
        );
        assert_eq!(m.lesion_f1, Some(1.0));
        assert_eq!(d.status.distances, "both empty");
        assert!(d.status.policy.contains(&"dice".to_string()));

        let n = evaluate_masks(
            "e",
            &e,
            &e,
            &EvalSettings {
                empty_policy: EmptyPolicy::Nan,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((n.metrics.dice, n.metrics.hd), (None, None));
        assert!(n.status.in_summary && n.status.policy.is_empty());

        let s = evaluate_masks(
            "e",
            &e,
            &e,
            &EvalSettings {
                empty_policy: EmptyPolicy::Skip,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!s.status.in_summary);

        let w = evaluate_masks(
            "e",
            &e,
            &e,
            &EvalSettings {
                empty_policy: EmptyPolicy::Worst,
                ..Default::default()
            },
        )
        .unwrap();
        let diag = (1.0f64 + 36.0).sqrt();
        assert_eq!(w.metrics.dice, Some(0.0));
        assert!((w.metrics.hd95.unwrap() - diag).abs() < 1e-12);
        assert_eq!(w.metrics.nsd, Some(0.0));
    }

    #[test]
    fn one_empty_gives_dice_zero_and_null_distances() {
        let e = mask(&[0; 6]);
        let f = mask(&[0, 1, 1, 0, 0, 0]);
        let r = evaluate_masks("p", &e, &f, &EvalSettings::default()).unwrap();
        assert_eq!(r.status.empty, Emptiness::Prediction);
        assert_eq!(r.status.distances, "undefined: empty prediction");
        assert_eq!(
            (r.metrics.dice, r.metrics.precision, r.metrics.recall),
            (Some(0.0), Some(0.0), Some(0.0))
        );
        assert_eq!(
            (r.metrics.hd95, r.metrics.assd, r.metrics.nsd),
            (None, None, Some(0.0))
        );
        assert_eq!(
            r.status.policy,
            vec!["precision", "mcc", "lesion_precision", "lesion_f1", "nsd"]
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["metrics"]["hd95"].is_null());

        let g = evaluate_masks("g", &f, &e, &EvalSettings::default()).unwrap();
        assert_eq!(g.status.distances, "undefined: empty ground truth");
        assert_eq!(
            (g.metrics.dice, g.metrics.recall, g.metrics.hd),
            (Some(0.0), Some(0.0), None)
        );
    }

    #[test]
    fn shape_and_spacing_checks() {
        let a = Mask::zeros(vec![2, 3], vec![1.0, 1.0]);
        let b = Mask::zeros(vec![3, 2], vec![1.0, 1.0]);
        assert!(evaluate_masks("x", &a, &b, &EvalSettings::default())
            .unwrap_err()
            .contains("shape mismatch"));
        assert!(
            check_geometry((&[2, 3], &[1.0, 1.0]), (&[2, 3], &[1.0, 1.002]), false)
                .unwrap_err()
                .contains("spacing")
        );
        assert!(check_geometry((&[2, 3], &[1.0, 1.0]), (&[2, 3], &[1.0, 1.0005]), false).is_ok());
        assert!(check_geometry((&[2, 3], &[1.0, 1.0]), (&[2, 3], &[1.0, 2.0]), true).is_ok());
    }

    #[test]
    fn probabilities_use_the_shared_threshold_rule() {
        let gt = Mask::from_vec(vec![1, 3], vec![true, true, false]);
        let p = ProbMap::new(vec![1, 3], vec![1.0, 1.0], vec![0.5, 0.49, 0.7]);
        let r = evaluate_probs("p", &p, &gt, &no_dist(EmptyPolicy::Default)).unwrap();
        assert_eq!(
            (r.metrics.tp, r.metrics.fn_, r.metrics.fp),
            (Some(1.0), Some(1.0), Some(1.0))
        );
    }
}
