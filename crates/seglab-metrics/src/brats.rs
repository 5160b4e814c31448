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

use crate::crop::{crop, union_bbox, BBox};
use crate::distance::{distance_metrics, DistanceOutcome, DistanceSettings, Hd95Convention};
use crate::lesion::label_components;
use crate::mask::Mask;
use crate::overlap::PairTable;
use crate::surface::Geometry;

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
    ("gli", BratsSettings { dilation: 3, min_volume_mm3: 50.0 }),
    ("ssa", BratsSettings { dilation: 3, min_volume_mm3: 50.0 }),
    ("ped", BratsSettings { dilation: 3, min_volume_mm3: 50.0 }),
    ("men", BratsSettings { dilation: 1, min_volume_mm3: 50.0 }),
    ("met", BratsSettings { dilation: 1, min_volume_mm3: 2.0 }),
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
        s.validate().map_err(|e| format!("--min-lesion-volume: {e}"))?;
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

/// Lesion-wise scores of `pred` against `gt` (same shape; `gt`'s spacing is used).
pub fn lesion_wise(pred: &Mask, gt: &Mask, settings: &BratsSettings) -> LesionWise {
    assert_eq!(pred.shape(), gt.shape(), "pred and gt shapes differ");
    let shape = grid(gt);
    let spacing = gt.spacing();
    let gt_volume_mm3 = volume(gt.count(), spacing);
    let empty = LesionWise {
        dice: 1.0,
        hd95: 0.0,
        n_gt_lesions: 0,
        n_gt_kept: 0,
        tp: 0,
        fn_: 0,
        fp: 0,
        gt_volume_mm3,
        lesions: Vec::new(),
    };
    let Some(union) = union_bbox(pred.data(), gt.data(), shape) else {
        return empty;
    };
    // Everything happens within `dilation` voxels of the union's box: the crop loses nothing (clipping at its
    // faces is clipping at the image's, since every seed lies at least `dilation` voxels inside the crop or on the
    // image border).
    let d = settings.dilation;
    let bbox = BBox {
        lo: std::array::from_fn(|i| union.lo[i].saturating_sub(d)),
        hi: std::array::from_fn(|i| (union.hi[i] + d).min(shape[i] - 1)),
    };
    let geo = Geometry::of(gt);
    let ((gt_c, cs), (pred_c, _)) = rayon::join(
        || crop(gt.data(), &geo, &bbox, 0),
        || crop(pred.data(), &geo, &bbox, 0),
    );
    let as_mask = |data: Vec<bool>| Mask::from_vec(cs.to_vec(), data);
    let dilated = dilate_18(&gt_c, cs, d);
    let full = Some(26);
    let (lesion_cc, pred_cc) = rayon::join(
        || label_components(&as_mask(dilated), full, 0),
        || label_components(&as_mask(pred_c.clone()), full, 0),
    );
    let (lesion_cc, pred_cc) = (
        lesion_cc.expect("26-connectivity is valid in 3D"),
        pred_cc.expect("26-connectivity is valid in 3D"),
    );
    let (n_les, n_pred) = (lesion_cc.count(), pred_cc.count());

    // One pass: ground-truth voxels and box of each lesion, box of each predicted component, and per (lesion,
    // component) pair whether they touch and how many ground-truth voxels they share.
    let mut gt_count = vec![0usize; n_les];
    let mut les_box = vec![BBox { lo: [usize::MAX; 3], hi: [0; 3] }; n_les];
    let mut pred_box = vec![BBox { lo: [usize::MAX; 3], hi: [0; 3] }; n_pred];
    let mut pairs = PairTable::new(n_les, n_pred);
    let grow = |b: &mut BBox, p: [usize; 3]| {
        for i in 0..3 {
            b.lo[i] = b.lo[i].min(p[i]);
            b.hi[i] = b.hi[i].max(p[i]);
        }
    };
    let [_, c1, c2] = cs;
    for (i, (&l, &p)) in lesion_cc.labels.iter().zip(&pred_cc.labels).enumerate() {
        if l == 0 && p == 0 {
            continue;
        }
        let at = [i / (c1 * c2), (i / c2) % c1, i % c2];
        if p > 0 {
            grow(&mut pred_box[p as usize - 1], at);
        }
        if l > 0 && gt_c[i] {
            gt_count[l as usize - 1] += 1;
            grow(&mut les_box[l as usize - 1], at);
        }
        if l > 0 && p > 0 {
            pairs.add(l as usize - 1, p as usize - 1, gt_c[i]);
        }
    }

    let matches: Vec<Vec<usize>> = (0..n_les).map(|l| pairs.matches(l)).collect();
    let mut matched_any = vec![false; n_pred];
    for &p in matches.iter().flatten() {
        matched_any[p] = true;
    }
    let fp = matched_any.iter().filter(|&&m| !m).count();
    let hd95_settings = DistanceSettings {
        hd95: Hd95Convention::Deepmind,
        ..DistanceSettings::default()
    };
    let lesions: Vec<BratsLesion> = (0..n_les)
        .into_par_iter()
        .map(|l| {
            let m = &matches[l];
            let gt_volume_mm3 = volume(gt_count[l], spacing);
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
            let pred_size: usize = m.iter().map(|&p| pred_cc.sizes[p]).sum();
            let inter: usize = m.iter().map(|&p| pairs.shared(l, p)).sum();
            let dice = 2.0 * inter as f64 / (gt_count[l] + pred_size) as f64;
            // HD95 on the box of the lesion and its matches, in the image's own dimensionality (2D contours in 2D).
            let mut b = les_box[l];
            for &p in m {
                for i in 0..3 {
                    b.lo[i] = b.lo[i].min(pred_box[p].lo[i]);
                    b.hi[i] = b.hi[i].max(pred_box[p].hi[i]);
                }
            }
            let ext = b.extent();
            let (mut g, mut q) = (Vec::with_capacity(ext.iter().product()), Vec::new());
            q.reserve(g.capacity());
            let label = l as u32 + 1;
            let in_match: Vec<bool> = (0..=n_pred)
                .map(|p| p > 0 && m.binary_search(&(p - 1)).is_ok())
                .collect();
            for z in b.lo[0]..=b.hi[0] {
                for y in b.lo[1]..=b.hi[1] {
                    let row = (z * c1 + y) * c2;
                    for i in row + b.lo[2]..=row + b.hi[2] {
                        g.push(lesion_cc.labels[i] == label && gt_c[i]);
                        q.push(in_match[pred_cc.labels[i] as usize]);
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
    let kept: Vec<&BratsLesion> = lesions.iter().filter(|l| l.kept).collect();
    let tp = kept.iter().filter(|l| l.matched_pred_components > 0).count();
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

/// `dst` = `src` dilated by one voxel both ways along `axis`.
fn dilate_axis(src: &[bool], dst: &mut [bool], shape: [usize; 3], axis: usize) {
    let stride: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    // Blocks of `n * stride` voxels: within a block, `stride`-long slices along the axis.
    for (s, d) in src
        .chunks(n * stride)
        .zip(dst.chunks_mut(n * stride))
    {
        for k in 0..n {
            let out = &mut d[k * stride..(k + 1) * stride];
            out.copy_from_slice(&s[k * stride..(k + 1) * stride]);
            if stride == 1 {
                continue;
            }
            if k > 0 {
                for (o, v) in out.iter_mut().zip(&s[(k - 1) * stride..k * stride]) {
                    *o |= *v;
                }
            }
            if k + 1 < n {
                for (o, v) in out.iter_mut().zip(&s[(k + 1) * stride..(k + 2) * stride]) {
                    *o |= *v;
                }
            }
        }
        if stride == 1 {
            for k in 0..n {
                d[k] = s[k] | (k > 0 && s[k - 1]) | (k + 1 < n && s[k + 1]);
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
                                if a < 0 || b < 0 || c < 0 || a >= n0 as i64 || b >= n1 as i64 || c >= n2 as i64 {
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
        let r = lesion_wise(&pred, &gt, &BratsSettings { dilation: 1, min_volume_mm3: 50.0 });
        assert_eq!((r.n_gt_lesions, r.n_gt_kept, r.tp, r.fn_, r.fp), (3, 2, 1, 1, 1));
        let merged = r.lesions.iter().find(|l| l.gt_volume_mm3 == 128.0).unwrap();
        assert!((merged.dice - 2.0 * 64.0 / (128.0 + 64.0)).abs() < 1e-12);
        assert!(merged.hd95 > 0.0 && merged.hd95 < MISS_HD95_MM);
        let missed = r.lesions.iter().find(|l| l.gt_volume_mm3 == 64.0).unwrap();
        assert_eq!((missed.dice, missed.hd95, missed.matched_pred_components), (0.0, MISS_HD95_MM, 0));
        let tiny = r.lesions.iter().find(|l| l.gt_volume_mm3 == 1.0).unwrap();
        assert!(!tiny.kept && tiny.matched_pred_components == 1 && tiny.dice == 0.0);
        assert!((r.dice - merged.dice / 3.0).abs() < 1e-12);
        assert!((r.hd95 - (merged.hd95 + 2.0 * MISS_HD95_MM) / 3.0).abs() < 1e-9);

        // Dilation 0: the two cubes stay apart, the one beside the tiny lesion becomes a false positive.
        let r0 = lesion_wise(&pred, &gt, &BratsSettings { dilation: 0, min_volume_mm3: 50.0 });
        assert_eq!((r0.n_gt_lesions, r0.tp, r0.fn_, r0.fp), (4, 1, 2, 2));
    }

    #[test]
    fn empty_cases_follow_the_reference_rules() {
        let e = Mask::zeros(vec![8, 8], vec![1.0; 2]);
        let mut f = e.clone();
        f.data_mut()[9] = true;
        let s = BratsSettings { dilation: 3, min_volume_mm3: 0.0 };
        let both = lesion_wise(&e, &e, &s);
        assert_eq!((both.dice, both.hd95, both.fp, both.n_gt_lesions), (1.0, 0.0, 0, 0));
        let gt_empty = lesion_wise(&f, &e, &s);
        assert_eq!((gt_empty.dice, gt_empty.hd95, gt_empty.fp), (0.0, MISS_HD95_MM, 1));
        let pred_empty = lesion_wise(&e, &f, &s);
        assert_eq!((pred_empty.dice, pred_empty.hd95, pred_empty.fn_), (0.0, MISS_HD95_MM, 1));
        // Only sub-threshold lesions, no false positive: 1 / 0 although the lesion is missed.
        let small = lesion_wise(&e, &f, &BratsSettings { dilation: 3, min_volume_mm3: 1.0 });
        assert_eq!((small.dice, small.hd95, small.n_gt_kept), (1.0, 0.0, 0));
    }

    #[test]
    fn challenge_names() {
        assert_eq!(BratsSettings::challenge("MET").unwrap(), BratsSettings { dilation: 1, min_volume_mm3: 2.0 });
        assert_eq!(BratsSettings::challenge("BraTS-GLI").unwrap().dilation, 3);
        assert!(BratsSettings::challenge("xyz").unwrap_err().contains("gli, ssa, ped, men, met"));
    }
}
