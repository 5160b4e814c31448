//! BraTS 2023 lesion-wise Dice and HD95, as the challenge's reference code computes them
//! (GitHub rachitsaluja/BraTS-2023-Metrics, `metrics.py` at commit 43c9052; read, not copied).
//!
//! 1. Connected components of both masks with full connectivity (26 in 3D, 8 in 2D).
//! 2. The ground truth is dilated `dilation` times by the 18-neighbourhood (the 3x3x3 cube without its corners;
//!    voxel steps, whatever the spacing; nothing outside the image); every 26-connected component of the dilated
//!    mask is one ground-truth lesion, made of the ground-truth voxels inside it (so lesions whose dilations touch
//!    are merged).
//! 3. A predicted component is matched to a lesion when it has a voxel inside the lesion's dilated component
//!    (overlap is not needed). The lesion is scored against the union of its matches, whole (also their parts far
//!    away): Dice, and HD95 in DeepMind's convention; a lesion without a match scores Dice 0 and HD95 374 mm (the
//!    reference's stand-in for infinity). One component may be matched to several lesions.
//! 4. Lesions of volume <= `min_volume_mm3` (voxel count times the voxel volume) are left out of the scores; their
//!    matches are not false positives. Predicted components matched to no lesion are false positives, whatever their
//!    size, and score Dice 0 and HD95 374.
//! 5. `dice = sum(dice of kept lesions) / (kept + fp)`, `hd95 = (sum(hd95 of kept lesions) + 374 fp) / (kept + fp)`;
//!    with no kept lesion and no false positive, Dice 1 and HD95 0 (even when a small lesion was missed).
//!
//! A 2D image is one plane of a 3D one: the 18-neighbourhood becomes the 3x3 square, 26-connectivity 8.
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crop::BBox;
use crate::distance::{distance_metrics, DistanceOutcome, DistanceSettings, Hd95Convention};
use crate::lesion::{component_boxes, label_components, RunLabels};
use crate::mask::Mask;

/// HD95 (mm) the reference scores a missed lesion, a false positive, and a whole-mask HD95 with one mask empty.
pub const MISS_HD95_MM: f64 = 374.0;

/// Parameters of the lesion-wise scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BratsSettings {
    /// Iterations of the 18-neighbour ground-truth dilation.
    pub dilation: usize,
    /// Lesions of at most this volume (mm^3) are left out of the scores.
    pub min_volume_mm3: f64,
}

/// The challenges' parameters, as the reference sets them.
pub const CHALLENGES: [(&str, BratsSettings); 5] = [
    (
        "gli",
        BratsSettings {
            dilation: 3,
            min_volume_mm3: 50.0,
        },
    ),
    (
        "ssa",
        BratsSettings {
            dilation: 3,
            min_volume_mm3: 50.0,
        },
    ),
    (
        "ped",
        BratsSettings {
            dilation: 3,
            min_volume_mm3: 50.0,
        },
    ),
    (
        "men",
        BratsSettings {
            dilation: 1,
            min_volume_mm3: 50.0,
        },
    ),
    (
        "met",
        BratsSettings {
            dilation: 1,
            min_volume_mm3: 2.0,
        },
    ),
];

impl BratsSettings {
    /// The parameters of a challenge by its short name (`gli`, `ssa`, `ped`, `men`, `met`, any case, with or
    /// without the `BraTS-` prefix).
    pub fn challenge(name: &str) -> Result<BratsSettings, String> {
        let lower = name.to_ascii_lowercase();
        let short = lower.strip_prefix("brats-").unwrap_or(&lower);
        CHALLENGES
            .iter()
            .find(|(n, _)| *n == short)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                let names: Vec<&str> = CHALLENGES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown BraTS challenge '{name}', expected one of: {}",
                    names.join(", ")
                )
            })
    }

    /// A challenge's parameters (`gli` when none is named) with either of them replaced; what `--brats-challenge`,
    /// `--gt-dilation` and `--min-lesion-volume` (and the Python keywords of the same names) resolve to. The error
    /// names the option at fault with the CLI's spelling.
    pub fn resolve(
        challenge: Option<&str>,
        dilation: Option<i64>,
        min_volume_mm3: Option<f64>,
    ) -> Result<BratsSettings, String> {
        let base = BratsSettings::challenge(challenge.unwrap_or("gli"))
            .map_err(|e| format!("--brats-challenge: {e}"))?;
        let dilation = match dilation {
            Some(d) if d < 0 => return Err(format!("--gt-dilation {d} must be >= 0")),
            Some(d) => d as usize,
            None => base.dilation,
        };
        let s = BratsSettings {
            dilation,
            min_volume_mm3: min_volume_mm3.unwrap_or(base.min_volume_mm3),
        };
        s.validate()
            .map_err(|e| format!("--min-lesion-volume: {e}"))?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.min_volume_mm3 >= 0.0 && self.min_volume_mm3.is_finite()) {
            return Err(format!(
                "the minimum lesion volume {} mm^3 must be a number >= 0",
                self.min_volume_mm3
            ));
        }
        Ok(())
    }
}

/// One ground-truth lesion (after merging).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BratsLesion {
    pub gt_volume_mm3: f64,
    pub dice: f64,
    pub hd95: f64,
    /// Predicted components matched to it (0: missed).
    pub matched_pred_components: usize,
    /// Volume above the threshold: counted in the scores.
    pub kept: bool,
}

/// The lesion-wise scores of one case (the JSON `lesionwise` object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LesionWise {
    pub dice: f64,
    pub hd95: f64,
    /// Ground-truth lesions after merging, and those above the volume threshold.
    pub n_gt_lesions: usize,
    pub n_gt_kept: usize,
    /// Kept lesions with a match, kept lesions without one, predicted components matched to no lesion.
    pub tp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub fp: usize,
    /// Volume of the whole ground truth.
    pub gt_volume_mm3: f64,
    /// In the order of the dilated components' first voxels.
    pub lesions: Vec<BratsLesion>,
}

/// The three image axes of a 2D or 3D mask (a 2D image is plane 0).
fn grid(mask: &Mask) -> [usize; 3] {
    match *mask.shape() {
        [h, w] => [1, h, w],
        [a, b, c] => [a, b, c],
        ref s => panic!("lesion-wise scores need a 2D or 3D mask, not shape {s:?}"),
    }
}

/// Volume of `count` voxels, multiplied out left to right as the reference does (`count * sx * sy * sz`), so that
/// a lesion exactly at the threshold is judged the same way.
fn volume(count: usize, spacing: &[f64]) -> f64 {
    spacing.iter().fold(count as f64, |v, s| v * s)
}

/// Ground-truth components whose dilations may touch, boxed together: each component's box grown by
/// `dilation + 1` (clipped to the image), boxes that overlap merged until none does. A lesion (a component of the
/// dilated ground truth) lies inside one cluster, at least one voxel away from its faces except at the image's
/// border, so dilating and labelling each cluster's box alone gives the lesions of the whole image; the work grows
/// with the lesions' boxes, not with the image.
fn clusters(
    gt_boxes: &[([usize; 3], [usize; 3])],
    dilation: usize,
    shape: [usize; 3],
    max_merged: usize,
) -> Vec<BBox> {
    let grown = gt_boxes.iter().map(|(lo, hi)| BBox {
        lo: std::array::from_fn(|i| lo[i].saturating_sub(dilation + 1)),
        hi: std::array::from_fn(|i| (hi[i] + dilation + 1).min(shape[i] - 1)),
    });
    let overlap = |a: &BBox, b: &BBox| (0..3).all(|i| a.lo[i] <= b.hi[i] && b.lo[i] <= a.hi[i]);
    let join = |a: BBox, b: BBox| BBox {
        lo: std::array::from_fn(|i| a.lo[i].min(b.lo[i])),
        hi: std::array::from_fn(|i| a.hi[i].max(b.hi[i])),
    };
    // Merging is quadratic in the components: past `max_merged` (a noisy mask), one box of them all.
    if gt_boxes.len() > max_merged {
        return grown.reduce(join).into_iter().collect();
    }
    // `out` never holds two overlapping boxes: a new box absorbs every box it overlaps, rechecking after each
    // growth.
    let mut out: Vec<BBox> = Vec::new();
    for mut b in grown {
        let mut k = 0;
        while k < out.len() {
            if overlap(&out[k], &b) {
                b = join(b, out.swap_remove(k));
                k = 0;
            } else {
                k += 1;
            }
        }
        out.push(b);
    }
    out
}

/// The lesions of one cluster: its box's ground truth, dilated and labelled.
struct Cluster {
    bbox: BBox,
    /// The box's ground truth and its lesion labels (1-based; 0 outside the dilated mask), in the box's C order.
    gt: Vec<bool>,
    labels: Vec<u32>,
    /// Per lesion: ground-truth voxels, their box (image coordinates), the image index of the lesion's first
    /// (dilated) voxel.
    gt_count: Vec<usize>,
    gt_box: Vec<BBox>,
    first: Vec<usize>,
    /// Touching (lesion, predicted component) pairs and the ground-truth voxels they share.
    pairs: Vec<(usize, usize, usize)>,
}

impl Cluster {
    fn of(bbox: BBox, gt: &Mask, pred: &RunLabels, shape: [usize; 3], dilation: usize) -> Cluster {
        let ext = bbox.extent();
        let [_, n1, n2] = shape;
        let data = gt.data();
        let mut g = Vec::with_capacity(ext.iter().product());
        let mut pred_labels = vec![0u32; g.capacity()];
        for z in bbox.lo[0]..=bbox.hi[0] {
            for y in bbox.lo[1]..=bbox.hi[1] {
                let row = (z * n1 + y) * n2;
                let local = ((z - bbox.lo[0]) * ext[1] + (y - bbox.lo[1])) * ext[2];
                g.extend_from_slice(&data[row + bbox.lo[2]..=row + bbox.hi[2]]);
                for run in pred.row(z * n1 + y) {
                    let (s, e) = (run.start as usize, run.end as usize);
                    let (s, e) = (s.max(bbox.lo[2]), e.min(bbox.hi[2] + 1));
                    if s < e {
                        pred_labels[local + s - bbox.lo[2]..local + e - bbox.lo[2]].fill(run.label);
                    }
                }
            }
        }
        let dilated = dilate_18(&g, ext, dilation);
        let lesions = label_components(&Mask::from_vec(ext.to_vec(), dilated), Some(26), 0)
            .expect("26-connectivity is valid in 3D");
        let n = lesions.count();
        let (mut gt_count, mut first) = (vec![0usize; n], vec![usize::MAX; n]);
        let mut gt_box = vec![
            BBox {
                lo: [usize::MAX; 3],
                hi: [0; 3]
            };
            n
        ];
        let mut pairs: std::collections::BTreeMap<(usize, usize), usize> = Default::default();
        for (i, &l) in lesions.labels.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let l = l as usize - 1;
            let at = [
                bbox.lo[0] + i / (ext[1] * ext[2]),
                bbox.lo[1] + (i / ext[2]) % ext[1],
                bbox.lo[2] + i % ext[2],
            ];
            if first[l] == usize::MAX {
                first[l] = (at[0] * n1 + at[1]) * n2 + at[2];
            }
            if g[i] {
                gt_count[l] += 1;
                let b = &mut gt_box[l];
                for ((lo, hi), &x) in b.lo.iter_mut().zip(b.hi.iter_mut()).zip(&at) {
                    *lo = (*lo).min(x);
                    *hi = (*hi).max(x);
                }
            }
            let p = pred_labels[i];
            if p > 0 {
                *pairs.entry((l, p as usize - 1)).or_default() += g[i] as usize;
            }
        }
        Cluster {
            bbox,
            gt: g,
            labels: lesions.labels,
            gt_count,
            gt_box,
            first,
            pairs: pairs.into_iter().map(|((l, p), s)| (l, p, s)).collect(),
        }
    }
}

/// Ground-truth components past which [`clusters`] makes one box of them all.
const MAX_MERGED: usize = 4096;

/// Lesion-wise scores of `pred` against `gt` (same shape; `gt`'s spacing is used).
pub fn lesion_wise(pred: &Mask, gt: &Mask, settings: &BratsSettings) -> LesionWise {
    lesion_wise_clustered(pred, gt, settings, MAX_MERGED)
}

fn lesion_wise_clustered(
    pred: &Mask,
    gt: &Mask,
    settings: &BratsSettings,
    max_merged: usize,
) -> LesionWise {
    assert_eq!(pred.shape(), gt.shape(), "pred and gt shapes differ");
    let shape = grid(gt);
    let n1 = shape[1];
    let spacing = gt.spacing();
    let gt_volume_mm3 = volume(gt.count(), spacing);
    let (gt_boxes, pred_cc) = rayon::join(
        || component_boxes(gt),
        || RunLabels::of(pred, None, 0).expect("full connectivity is valid in 2D and 3D"),
    );
    let pred_box: Vec<BBox> = pred_cc
        .boxes(n1)
        .into_iter()
        .map(|(lo, hi)| BBox { lo, hi })
        .collect();
    let n_pred = pred_cc.sizes.len();
    let d = settings.dilation;
    let clusters: Vec<Cluster> = clusters(&gt_boxes, d, shape, max_merged)
        .into_par_iter()
        .map(|b| Cluster::of(b, gt, &pred_cc, shape, d))
        .collect();

    // Lesions in the order of their first voxels in the image, as one labelling of the whole image numbers them.
    let mut order: Vec<(usize, usize, usize)> = clusters
        .iter()
        .enumerate()
        .flat_map(|(c, cl)| cl.first.iter().enumerate().map(move |(l, &f)| (f, c, l)))
        .collect();
    order.sort_unstable();
    let mut matches: Vec<Vec<(usize, usize)>> = vec![Vec::new(); order.len()];
    // index[c][l]: the position in `order` of cluster c's lesion l.
    let mut index: Vec<Vec<usize>> = clusters.iter().map(|cl| vec![0; cl.first.len()]).collect();
    for (k, &(_, c, l)) in order.iter().enumerate() {
        index[c][l] = k;
    }
    let mut matched_any = vec![false; n_pred];
    for (c, cl) in clusters.iter().enumerate() {
        for &(l, p, shared) in &cl.pairs {
            matches[index[c][l]].push((p, shared));
            matched_any[p] = true;
        }
    }
    let fp = matched_any.iter().filter(|&&m| !m).count();
    let hd95_settings = DistanceSettings {
        hd95: Hd95Convention::Deepmind,
        ..DistanceSettings::default()
    };
    let lesions: Vec<BratsLesion> = order
        .par_iter()
        .zip(&matches)
        .map(|(&(_, c, l), m)| {
            let cl = &clusters[c];
            let gt_volume_mm3 = volume(cl.gt_count[l], spacing);
            let kept = gt_volume_mm3 > settings.min_volume_mm3;
            if m.is_empty() {
                return BratsLesion {
                    gt_volume_mm3,
                    dice: 0.0,
                    hd95: MISS_HD95_MM,
                    matched_pred_components: 0,
                    kept,
                };
            }
            let pred_size: usize = m.iter().map(|&(p, _)| pred_cc.sizes[p]).sum();
            let inter: usize = m.iter().map(|&(_, s)| s).sum();
            let dice = 2.0 * inter as f64 / (cl.gt_count[l] + pred_size) as f64;
            // HD95 on the box of the lesion and its matches (whole components), in the image's own
            // dimensionality (2D contours in 2D).
            let mut b = cl.gt_box[l];
            for &(p, _) in m {
                for i in 0..3 {
                    b.lo[i] = b.lo[i].min(pred_box[p].lo[i]);
                    b.hi[i] = b.hi[i].max(pred_box[p].hi[i]);
                }
            }
            let ext = b.extent();
            let (mut g, mut q) = (
                vec![false; ext.iter().product()],
                vec![false; ext.iter().product()],
            );
            let at = |z: usize, y: usize| ((z - b.lo[0]) * ext[1] + (y - b.lo[1])) * ext[2];
            // The lesion's voxels: its ground truth, inside its box, inside the cluster.
            let (cb, ce) = (cl.bbox, cl.bbox.extent());
            let (gb, label) = (cl.gt_box[l], l as u32 + 1);
            for z in gb.lo[0]..=gb.hi[0] {
                for y in gb.lo[1]..=gb.hi[1] {
                    let src = ((z - cb.lo[0]) * ce[1] + (y - cb.lo[1])) * ce[2];
                    let dst = at(z, y);
                    for x in gb.lo[2]..=gb.hi[2] {
                        let i = src + x - cb.lo[2];
                        g[dst + x - b.lo[2]] = cl.labels[i] == label && cl.gt[i];
                    }
                }
            }
            // The matched components' voxels, from their runs.
            let in_match: Vec<bool> = (0..=n_pred)
                .map(|p| p > 0 && m.iter().any(|&(q, _)| q == p - 1))
                .collect();
            for z in b.lo[0]..=b.hi[0] {
                for y in b.lo[1]..=b.hi[1] {
                    let dst = at(z, y);
                    for run in pred_cc.row(z * n1 + y) {
                        if in_match[run.label as usize] {
                            // Matched components lie inside the box.
                            let (s, e) = (run.start as usize - b.lo[2], run.end as usize - b.lo[2]);
                            q[dst + s..dst + e].fill(true);
                        }
                    }
                }
            }
            let sub_shape = if gt.ndim() == 2 {
                vec![ext[1], ext[2]]
            } else {
                ext.to_vec()
            };
            let g = Mask::new(sub_shape.clone(), spacing.to_vec(), g);
            let q = Mask::new(sub_shape, spacing.to_vec(), q);
            let hd95 = match distance_metrics(&q, &g, &hd95_settings) {
                DistanceOutcome::Computed(d) => d.hd95,
                _ => unreachable!("a matched lesion and its matches are both non-empty"),
            };
            BratsLesion {
                gt_volume_mm3,
                dice,
                hd95,
                matched_pred_components: m.len(),
                kept,
            }
        })
        .collect();
    let n_les = lesions.len();
    let kept: Vec<&BratsLesion> = lesions.iter().filter(|l| l.kept).collect();
    let tp = kept
        .iter()
        .filter(|l| l.matched_pred_components > 0)
        .count();
    let denominator = kept.len() + fp;
    let (dice, hd95) = if denominator == 0 {
        (1.0, 0.0)
    } else {
        (
            kept.iter().map(|l| l.dice).sum::<f64>() / denominator as f64,
            (kept.iter().map(|l| l.hd95).sum::<f64>() + MISS_HD95_MM * fp as f64)
                / denominator as f64,
        )
    };
    LesionWise {
        dice,
        hd95,
        n_gt_lesions: n_les,
        n_gt_kept: kept.len(),
        tp,
        fn_: kept.len() - tp,
        fp,
        gt_volume_mm3,
        lesions,
    }
}

/// `iterations` dilations by the 18-neighbourhood on a three-axis grid, nothing outside it. The neighbourhood is
/// the union of the three axis-plane 3x3 squares, each a pair of 1D dilations: `X + S = D0(D1 X | D2 X) | D1 D2 X`.
pub(crate) fn dilate_18(mask: &[bool], shape: [usize; 3], iterations: usize) -> Vec<bool> {
    let mut x = mask.to_vec();
    let (mut b, mut c) = (vec![false; x.len()], vec![false; x.len()]);
    let mut t = vec![false; x.len()];
    for _ in 0..iterations {
        dilate_axis(&x, &mut b, shape, 1);
        dilate_axis(&x, &mut c, shape, 2);
        dilate_axis(&c, &mut t, shape, 1); // D1 D2 X
        for (bi, ci) in b.iter_mut().zip(&c) {
            *bi |= *ci;
        }
        dilate_axis(&b, &mut x, shape, 0); // D0 (D1 X | D2 X)
        for (xi, ti) in x.iter_mut().zip(&t) {
            *xi |= *ti;
        }
    }
    x
}

/// `dst` = `src` dilated by one voxel both ways along `axis`. Whole slices at a time (shifted copies ORed
/// together), which the compiler turns into wide vector operations.
fn dilate_axis(src: &[bool], dst: &mut [bool], shape: [usize; 3], axis: usize) {
    let stride: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    if n == 1 {
        dst.copy_from_slice(src);
        return;
    }
    if stride == 1 {
        // Along the last axis: rows of `n` voxels, each voxel ORed with its two neighbours in the row.
        for (s, d) in src.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
            d[0] = s[0] | s[1];
            d[n - 1] = s[n - 1] | s[n - 2];
            for (((o, &a), &b), &c) in d[1..n - 1]
                .iter_mut()
                .zip(&s[..n - 2])
                .zip(&s[1..n - 1])
                .zip(&s[2..])
            {
                *o = a | b | c;
            }
        }
        return;
    }
    // Blocks of `n * stride` voxels: within a block, `stride`-long slices along the axis.
    for (s, d) in src
        .chunks_exact(n * stride)
        .zip(dst.chunks_exact_mut(n * stride))
    {
        for k in 0..n {
            let out = &mut d[k * stride..(k + 1) * stride];
            let mid = &s[k * stride..(k + 1) * stride];
            let lo = &s[k.saturating_sub(1) * stride..(k.saturating_sub(1) + 1) * stride];
            let hi = &s[(k + 1).min(n - 1) * stride..((k + 1).min(n - 1) + 1) * stride];
            for (((o, &a), &b), &c) in out.iter_mut().zip(lo).zip(mid).zip(hi) {
                *o = a | b | c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Dilation by definition: a voxel is set when a set voxel lies at most one step away along at most two axes.
    fn naive_18(mask: &[bool], shape: [usize; 3]) -> Vec<bool> {
        let [n0, n1, n2] = shape;
        let mut out = vec![false; mask.len()];
        for z in 0..n0 {
            for y in 0..n1 {
                for x in 0..n2 {
                    let mut hit = false;
                    for dz in -1i64..=1 {
                        for dy in -1i64..=1 {
                            for dx in -1i64..=1 {
                                if dz.abs() + dy.abs() + dx.abs() == 3 {
                                    continue;
                                }
                                let (a, b, c) = (z as i64 + dz, y as i64 + dy, x as i64 + dx);
                                if a < 0
                                    || b < 0
                                    || c < 0
                                    || a >= n0 as i64
                                    || b >= n1 as i64
                                    || c >= n2 as i64
                                {
                                    continue;
                                }
                                hit |= mask[((a as usize) * n1 + b as usize) * n2 + c as usize];
                            }
                        }
                    }
                    out[(z * n1 + y) * n2 + x] = hit;
                }
            }
        }
        out
    }

    /// Random blobs: many small components, some close enough to merge through the dilation.
    fn blobs(rng: &mut SplitMix64, shape: &[usize], n: usize) -> Vec<bool> {
        let len: usize = shape.iter().product();
        let mut m = vec![false; len];
        for _ in 0..n {
            let c: Vec<usize> = shape
                .iter()
                .map(|&s| (rng.uniform() * s as f64) as usize)
                .collect();
            let r: Vec<usize> = shape
                .iter()
                .map(|_| (rng.uniform() * 3.0) as usize)
                .collect();
            for (i, v) in m.iter_mut().enumerate() {
                let mut rest = i;
                let mut inside = true;
                for k in (0..shape.len()).rev() {
                    let x = rest % shape[k];
                    rest /= shape[k];
                    inside &= x.abs_diff(c[k]) <= r[k];
                }
                *v |= inside;
            }
        }
        m
    }

    #[test]
    fn clusters_give_the_lesions_of_one_labelling_of_the_whole_image() {
        let mut rng = SplitMix64::new(19);
        for (shape, n) in [
            (vec![32, 40, 44], 25),
            (vec![20, 90, 30], 20),
            (vec![64, 70], 30),
            (vec![1, 50, 50], 12),
        ] {
            let gt = Mask::new(
                shape.clone(),
                vec![1.0; shape.len()],
                blobs(&mut rng, &shape, n),
            );
            // The truth moved by one voxel along the last axis, and false positives.
            let w = shape[shape.len() - 1];
            let extra = blobs(&mut rng, &shape, n / 3);
            let moved = (0..gt.len())
                .map(|i| (i % w > 0 && gt.data()[i - 1]) || extra[i])
                .collect();
            let pred = Mask::new(shape.clone(), vec![1.0; shape.len()], moved);
            let mut lesions = Vec::new();
            for d in [0, 1, 3] {
                let settings = BratsSettings {
                    dilation: d,
                    min_volume_mm3: 5.0,
                };
                let clustered = lesion_wise(&pred, &gt, &settings);
                // No merging: one box around every component, the whole-image computation.
                let whole = lesion_wise_clustered(&pred, &gt, &settings, 0);
                assert_eq!(clustered, whole, "shape {shape:?}, dilation {d}");
                assert!(
                    clustered.n_gt_lesions > 1 && clustered.tp > 0,
                    "shape {shape:?}, dilation {d}: trivial"
                );
                lesions.push(clustered.n_gt_lesions);
            }
            // The dilation merged lesions (the clusters had something to merge).
            assert!(lesions[2] < lesions[0], "shape {shape:?}: {lesions:?}");
        }
    }

    #[test]
    fn dilation_is_the_18_neighbourhood_iterated() {
        let mut rng = SplitMix64::new(7);
        for shape in [[5, 6, 7], [1, 9, 4], [3, 1, 8], [6, 5, 1]] {
            let n: usize = shape.iter().product();
            for density in [0.02, 0.1] {
                let m: Vec<bool> = (0..n).map(|_| rng.uniform() < density).collect();
                let mut expected = m.clone();
                for it in 1..=3 {
                    expected = naive_18(&expected, shape);
                    assert_eq!(dilate_18(&m, shape, it), expected, "{shape:?} x{it}");
                }
            }
        }
        // One voxel, three times: the offsets with every coordinate <= 3 and at most 6 steps in all.
        let shape = [9, 9, 9];
        let mut m = vec![false; 729];
        m[(4 * 9 + 4) * 9 + 4] = true;
        let d = dilate_18(&m, shape, 3);
        let expected = (0..729)
            .filter(|&i| {
                let p = [i / 81, (i / 9) % 9, i % 9].map(|c: usize| c.abs_diff(4));
                p.iter().all(|&c| c <= 3) && p.iter().sum::<usize>() <= 6
            })
            .count();
        assert_eq!(d.iter().filter(|&&v| v).count(), expected);
    }

    fn cube(mask: &mut Mask, lo: [usize; 3], side: [usize; 3]) {
        let s = mask.shape().to_vec();
        for z in lo[0]..lo[0] + side[0] {
            for y in lo[1]..lo[1] + side[1] {
                for x in lo[2]..lo[2] + side[2] {
                    mask.data_mut()[(z * s[1] + y) * s[2] + x] = true;
                }
            }
        }
    }

    #[test]
    fn merging_matching_and_the_score() {
        let shape = vec![30, 30, 30];
        let mut gt = Mask::zeros(shape.clone(), vec![1.0; 3]);
        let mut pred = Mask::zeros(shape, vec![1.0; 3]);
        // Two 4^3 lesions 2 voxels apart along axis 2: one lesion after dilation 1 (gap <= 2d).
        cube(&mut gt, [2, 2, 2], [4, 4, 4]);
        cube(&mut gt, [2, 2, 8], [4, 4, 4]);
        // A far lesion missed, and a tiny one (1 voxel, dropped at 50 mm^3) with a 1-voxel prediction beside it.
        cube(&mut gt, [20, 20, 20], [4, 4, 4]);
        cube(&mut gt, [2, 25, 25], [1, 1, 1]);
        cube(&mut pred, [2, 25, 26], [1, 1, 1]);
        // The prediction covers the first cube only; a stray component far from every lesion.
        cube(&mut pred, [2, 2, 2], [4, 4, 4]);
        cube(&mut pred, [12, 25, 3], [2, 2, 2]);
        let r = lesion_wise(
            &pred,
            &gt,
            &BratsSettings {
                dilation: 1,
                min_volume_mm3: 50.0,
            },
        );
        assert_eq!(
            (r.n_gt_lesions, r.n_gt_kept, r.tp, r.fn_, r.fp),
            (3, 2, 1, 1, 1)
        );
        let merged = r.lesions.iter().find(|l| l.gt_volume_mm3 == 128.0).unwrap();
        assert!((merged.dice - 2.0 * 64.0 / (128.0 + 64.0)).abs() < 1e-12);
        assert!(merged.hd95 > 0.0 && merged.hd95 < MISS_HD95_MM);
        let missed = r.lesions.iter().find(|l| l.gt_volume_mm3 == 64.0).unwrap();
        assert_eq!(
            (missed.dice, missed.hd95, missed.matched_pred_components),
            (0.0, MISS_HD95_MM, 0)
        );
        let tiny = r.lesions.iter().find(|l| l.gt_volume_mm3 == 1.0).unwrap();
        assert!(!tiny.kept && tiny.matched_pred_components == 1 && tiny.dice == 0.0);
        assert!((r.dice - merged.dice / 3.0).abs() < 1e-12);
        assert!((r.hd95 - (merged.hd95 + 2.0 * MISS_HD95_MM) / 3.0).abs() < 1e-9);

        // Dilation 0: the two cubes stay apart, the one beside the tiny lesion becomes a false positive.
        let r0 = lesion_wise(
            &pred,
            &gt,
            &BratsSettings {
                dilation: 0,
                min_volume_mm3: 50.0,
            },
        );
        assert_eq!((r0.n_gt_lesions, r0.tp, r0.fn_, r0.fp), (4, 1, 2, 2));
    }

    #[test]
    fn empty_cases_follow_the_reference_rules() {
        let e = Mask::zeros(vec![8, 8], vec![1.0; 2]);
        let mut f = e.clone();
        f.data_mut()[9] = true;
        let s = BratsSettings {
            dilation: 3,
            min_volume_mm3: 0.0,
        };
        let both = lesion_wise(&e, &e, &s);
        assert_eq!(
            (both.dice, both.hd95, both.fp, both.n_gt_lesions),
            (1.0, 0.0, 0, 0)
        );
        let gt_empty = lesion_wise(&f, &e, &s);
        assert_eq!(
            (gt_empty.dice, gt_empty.hd95, gt_empty.fp),
            (0.0, MISS_HD95_MM, 1)
        );
        let pred_empty = lesion_wise(&e, &f, &s);
        assert_eq!(
            (pred_empty.dice, pred_empty.hd95, pred_empty.fn_),
            (0.0, MISS_HD95_MM, 1)
        );
        // Only sub-threshold lesions, no false positive: 1 / 0 although the lesion is missed.
        let small = lesion_wise(
            &e,
            &f,
            &BratsSettings {
                dilation: 3,
                min_volume_mm3: 1.0,
            },
        );
        assert_eq!((small.dice, small.hd95, small.n_gt_kept), (1.0, 0.0, 0));
    }

    #[test]
    fn challenge_names() {
        assert_eq!(
            BratsSettings::challenge("MET").unwrap(),
            BratsSettings {
                dilation: 1,
                min_volume_mm3: 2.0
            }
        );
        assert_eq!(BratsSettings::challenge("BraTS-GLI").unwrap().dilation, 3);
        assert!(BratsSettings::challenge("xyz")
            .unwrap_err()
            .contains("gli, ssa, ped, men, met"));
    }
}
