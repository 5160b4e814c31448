//! Panoptic instance metrics: the connected components of both masks matched one to one, as panoptica's
//! `NaiveThresholdMatching` (PyPI `panoptica` 2.1.7) matches them.
//!
//! - Instances are the connected components of each mask (`--connectivity`, default full: 8 in 2D, 26 in 3D;
//!   panoptica's own default is 26 in 3D but 4 in 2D, where it calls `scipy.ndimage.label`), after
//!   `--min-lesion-size`.
//! - Every overlapping (gt, pred) pair gets its IoU; pairs are taken by IoU, highest first (ties in increasing
//!   (pred, gt) label order), and accepted when neither is matched yet and IoU >= `match_iou`.
//! - `tp` matches, `fp` unmatched predictions, `fn` unmatched ground-truth instances;
//!   `rq = tp / (tp + fp/2 + fn/2)`, `sq` = mean IoU of the matches, `sq_dice` their mean Dice, `pq = sq * rq`, `pq_dice = sq_dice * rq`;
//!   `sq_hd95` and `sq_assd` the means of the matched pairs' HD95 (MedPy's pooled 95th percentile of boundary-voxel
//!   distances) and ASSD (mean of the two directed means), in mm.
//! - Empty cases, as panoptica: no instance at all gives null everywhere (panoptica: NaN); instances but no match
//!   give rq = sq = sq_dice = pq = 0 and null `sq_hd95`/`sq_assd` (panoptica: infinity for ASSD, which JSON cannot
//!   hold; for HD95 it has no value and raises).
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crop::UnionCrop;
use crate::distance::{
    distance_metrics, AssdConvention, DistanceOutcome, DistanceSettings, Hd95Convention,
};
use crate::lesion::{label_components, LesionSettings, RunLabels};
use crate::mask::Mask;
use crate::overlap::PairTable;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSettings {
    /// A pair matches when its IoU is at least this.
    pub match_iou: f64,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        InstanceSettings { match_iou: 0.5 }
    }
}

impl InstanceSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.match_iou) {
            return Err(format!(
                "the match IoU {} must be in [0, 1]",
                self.match_iou
            ));
        }
        Ok(())
    }
}

/// One matched pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstancePair {
    /// Voxels of the ground-truth and the predicted instance.
    pub gt_size: usize,
    pub pred_size: usize,
    pub iou: f64,
    pub dice: f64,
    pub hd95: f64,
    pub assd: f64,
}

/// The JSON `instances` object of a case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instances {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub rq: Option<f64>,
    pub sq: Option<f64>,
    pub pq: Option<f64>,
    pub sq_dice: Option<f64>,
    pub pq_dice: Option<f64>,
    pub sq_hd95: Option<f64>,
    pub sq_assd: Option<f64>,
    /// Matched pairs, in the order they were matched (highest IoU first).
    pub pairs: Vec<InstancePair>,
}

/// Instance metrics of `pred` against `gt`.
pub fn instances(
    pred: &Mask,
    gt: &Mask,
    lesion: &LesionSettings,
    settings: &InstanceSettings,
) -> Result<Instances, String> {
    instances_in(
        UnionCrop::new(pred, gt).as_ref(),
        gt.ndim(),
        lesion,
        settings,
    )
}

/// [`instances`] on the union crop of a case (`None`: both masks empty; `ndim` of the image).
pub fn instances_in(
    crop: Option<&UnionCrop>,
    ndim: usize,
    lesion: &LesionSettings,
    settings: &InstanceSettings,
) -> Result<Instances, String> {
    let none = Instances {
        tp: 0,
        fp: 0,
        fn_: 0,
        rq: None,
        sq: None,
        pq: None,
        sq_dice: None,
        pq_dice: None,
        sq_hd95: None,
        sq_assd: None,
        pairs: Vec::new(),
    };
    let Some(crop) = crop else {
        // Still check the connectivity, as a non-empty case would.
        label_components(
            &Mask::zeros(vec![1; ndim], vec![1.0; ndim]),
            lesion.connectivity,
            0,
        )?;
        return Ok(none);
    };
    // Components as labelled runs: overlaps are intersections of runs, boxes and instance masks come from them
    // (no per-voxel label image of the crop).
    let (gt_cc, pred_cc) = rayon::join(
        || RunLabels::of(&crop.gt, lesion.connectivity, lesion.min_lesion_size),
        || RunLabels::of(&crop.pred, lesion.connectivity, lesion.min_lesion_size),
    );
    let (gt_cc, pred_cc) = (gt_cc?, pred_cc?);
    let (n_gt, n_pred) = (gt_cc.sizes.len(), pred_cc.sizes.len());
    if n_gt + n_pred == 0 {
        return Ok(none);
    }
    let shape = crop.gt.shape().to_vec();
    let rows_per_plane = shape[shape.len() - 2];
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let mut table = PairTable::new(n_gt, n_pred);
    for r in 0..rows {
        let (a, b) = (gt_cc.row(r), pred_cc.row(r));
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            let (s, e) = (x.start.max(y.start), x.end.min(y.end));
            if s < e && x.label > 0 && y.label > 0 {
                table.add(x.label as usize - 1, y.label as usize - 1, (e - s) as usize);
            }
            if x.end < y.end {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    let (gt_box, pred_box) = (gt_cc.boxes(rows_per_plane), pred_cc.boxes(rows_per_plane));
    let mut candidates: Vec<(f64, usize, usize, usize)> = table
        .pairs()
        .into_iter()
        .map(|(g, p, inter)| {
            let union = gt_cc.sizes[g] + pred_cc.sizes[p] - inter;
            (inter as f64 / union as f64, g, p, inter)
        })
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.2, a.1).cmp(&(b.2, b.1))));
    let (mut gt_taken, mut pred_taken) = (vec![false; n_gt], vec![false; n_pred]);
    let mut matched = Vec::new();
    for (iou, g, p, inter) in candidates {
        if gt_taken[g] || pred_taken[p] || iou < settings.match_iou {
            continue;
        }
        gt_taken[g] = true;
        pred_taken[p] = true;
        matched.push((iou, g, p, inter));
    }
    let distance = DistanceSettings {
        hd95: Hd95Convention::Medpy,
        assd: AssdConvention::MeanOfDirected,
        ..DistanceSettings::default()
    };
    let pairs: Vec<InstancePair> = matched
        .par_iter()
        .map(|&(iou, g, p, inter)| {
            let (gm, pm) = instance_box(&gt_cc, g, gt_box[g], &pred_cc, p, pred_box[p], &shape);
            let spacing = crop.gt.spacing().to_vec();
            let (gm, pm) = (
                Mask::new(gm.0.clone(), spacing.clone(), gm.1),
                Mask::new(gm.0, spacing, pm),
            );
            let d = match distance_metrics(&pm, &gm, &distance) {
                DistanceOutcome::Computed(d) => d,
                _ => unreachable!("matched instances overlap"),
            };
            let (gs, ps) = (gt_cc.sizes[g], pred_cc.sizes[p]);
            InstancePair {
                gt_size: gs,
                pred_size: ps,
                iou,
                dice: 2.0 * inter as f64 / (gs + ps) as f64,
                hd95: d.hd95,
                assd: d.assd,
            }
        })
        .collect();
    let tp = pairs.len();
    let (fp, fn_) = (n_pred - tp, n_gt - tp);
    let mean = |f: fn(&InstancePair) -> f64| {
        (tp > 0).then(|| pairs.iter().map(f).sum::<f64>() / tp as f64)
    };
    let rq = tp as f64 / (tp as f64 + 0.5 * fp as f64 + 0.5 * fn_ as f64);
    let sq = mean(|p| p.iou).unwrap_or(0.0);
    let sq_dice = mean(|p| p.dice).unwrap_or(0.0);
    Ok(Instances {
        tp,
        fp,
        fn_,
        rq: Some(rq),
        sq: Some(sq),
        pq: Some(sq * rq),
        sq_dice: Some(sq_dice),
        pq_dice: Some(sq_dice * rq),
        sq_hd95: mean(|p| p.hd95),
        sq_assd: mean(|p| p.assd),
        pairs,
    })
}

/// The two instances (0-based components `g`, `p` with their boxes) cut to the box around both:
/// `(shape, gt voxels)` and the prediction's voxels.
#[allow(clippy::type_complexity)]
fn instance_box(
    gt: &RunLabels,
    g: usize,
    g_box: ([usize; 3], [usize; 3]),
    pred: &RunLabels,
    p: usize,
    p_box: ([usize; 3], [usize; 3]),
    shape: &[usize],
) -> ((Vec<usize>, Vec<bool>), Vec<bool>) {
    let rows_per_plane = shape[shape.len() - 2];
    let lo: [usize; 3] = std::array::from_fn(|k| g_box.0[k].min(p_box.0[k]));
    let hi: [usize; 3] = std::array::from_fn(|k| g_box.1[k].max(p_box.1[k]));
    let ext: Vec<usize> = (0..3).map(|k| hi[k] - lo[k] + 1).collect();
    let n = ext.iter().product();
    let (mut gm, mut pm) = (vec![false; n], vec![false; n]);
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            let at = ((z - lo[0]) * ext[1] + (y - lo[1])) * ext[2];
            let r = z * rows_per_plane + y;
            for (runs, label, out) in [
                (gt.row(r), g as u32 + 1, &mut gm),
                (pred.row(r), p as u32 + 1, &mut pm),
            ] {
                for run in runs.iter().filter(|run| run.label == label) {
                    // The component lies inside the box.
                    out[at + run.start as usize - lo[2]..at + run.end as usize - lo[2]].fill(true);
                }
            }
        }
    }
    let box_shape = if shape.len() == 2 {
        ext[1..].to_vec()
    } else {
        ext
    };
    ((box_shape, gm), pm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Mask {
        let (h, w) = (rows.len(), rows[0].len());
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        Mask::new(vec![h, w], vec![1.0, 1.0], data)
    }

    #[test]
    fn one_to_one_matching_by_iou() {
        let gt = mask(&[
            "####......",
            "####......",
            "..........",
            "......###.",
            "......###.",
        ]);
        // The first instance is split in two halves (IoU 0.5 each: only one matches), the second is found whole,
        // and a stray pixel is a false positive.
        let pred = mask(&[
            "##.##....#",
            "##.##.....",
            "..........",
            "......###.",
            "......###.",
        ]);
        let r = instances(
            &pred,
            &gt,
            &LesionSettings {
                connectivity: Some(4),
                min_lesion_size: 0,
            },
            &InstanceSettings::default(),
        )
        .unwrap();
        assert_eq!((r.tp, r.fp, r.fn_), (2, 2, 0));
        assert_eq!(r.pairs[0].iou, 1.0);
        assert_eq!(r.pairs[1].iou, 0.5);
        let rq = 2.0 / (2.0 + 1.0);
        assert!((r.rq.unwrap() - rq).abs() < 1e-15);
        assert!((r.sq.unwrap() - 0.75).abs() < 1e-15);
        assert!((r.pq.unwrap() - 0.75 * rq).abs() < 1e-15);
        assert!((r.sq_dice.unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-15);
        assert_eq!(r.pairs[0].hd95, 0.0);
        // A stricter threshold keeps only the exact match.
        let strict = instances(
            &pred,
            &gt,
            &LesionSettings {
                connectivity: Some(4),
                min_lesion_size: 0,
            },
            &InstanceSettings { match_iou: 0.6 },
        )
        .unwrap();
        assert_eq!((strict.tp, strict.fp, strict.fn_), (1, 3, 1));
    }

    #[test]
    fn empty_cases_follow_panoptica() {
        let e = mask(&["....", "...."]);
        let f = mask(&["##..", "...."]);
        let s = (LesionSettings::default(), InstanceSettings::default());
        let both = instances(&e, &e, &s.0, &s.1).unwrap();
        assert_eq!((both.tp, both.rq, both.sq, both.pq), (0, None, None, None));
        let missed = instances(&e, &f, &s.0, &s.1).unwrap();
        assert_eq!(
            (missed.fn_, missed.rq, missed.sq, missed.pq),
            (1, Some(0.0), Some(0.0), Some(0.0))
        );
        assert_eq!((missed.sq_hd95, missed.sq_assd), (None, None));
        assert!(instances(
            &f,
            &f,
            &LesionSettings {
                connectivity: Some(6),
                min_lesion_size: 0
            },
            &s.1
        )
        .is_err());
    }
}
