//! Lesion-wise metrics: connected components of the ground truth and the prediction, which of them overlap, and a
//! Dice per ground-truth lesion.
//!
//! Definitions (the JSON keys of `seglab evaluate`):
//! - `gt_lesions`, `pred_lesions`: number of connected components (after dropping those smaller than
//!   `min_lesion_size` voxels).
//! - `lesions_detected`: ground-truth components containing at least one predicted voxel (of a kept component);
//!   `lesions_missed` = `gt_lesions - lesions_detected`.
//! - `false_positive_lesions`: predicted components touching no ground-truth voxel (of a kept component).
//! - `lesion_recall` = detected / gt_lesions; `lesion_precision` = (pred_lesions - false_positive_lesions) /
//!   pred_lesions; `lesion_f1` = harmonic mean of the two. Each is `None` when its denominator is 0.
//! - Over several cases ([`LesionCounts`]): the counts are summed, then the same ratios are taken (pooled, not a mean
//!   of per-case ratios, so that a case with one lesion weighs as much as each lesion of a case with ten).
//! - Per-lesion Dice of a ground-truth lesion `g`: `2 |g ∩ P| / (|g| + |P|)` where `P` is the union of the
//!   predicted components that overlap `g` (0 when none does).
use serde::{Deserialize, Serialize};

use crate::mask::Mask;
use crate::surface::UnionCrop;

/// Connectivity by neighbour count: 4 or 8 in 2D, 6, 18 or 26 in 3D; `None` means full (8 / 26).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionSettings {
    pub connectivity: Option<u32>,
    /// Components with fewer voxels than this are dropped before counting (0 and 1 keep everything).
    pub min_lesion_size: usize,
}

impl Default for LesionSettings {
    fn default() -> Self {
        LesionSettings {
            connectivity: None,
            min_lesion_size: 0,
        }
    }
}

/// The neighbour counts a user may ask for, whatever the dimensionality.
pub const VALID_CONNECTIVITIES: [u32; 5] = [4, 6, 8, 18, 26];

/// Maximum number of coordinates that may differ between two neighbours (1 = faces, 2 = edges, 3 = corners).
fn neighbour_order(neighbours: Option<u32>, ndim: usize) -> Result<usize, String> {
    match (ndim, neighbours) {
        (_, None) => Ok(ndim),
        (2, Some(4)) | (3, Some(6)) => Ok(1),
        (2, Some(8)) | (3, Some(18)) => Ok(2),
        (3, Some(26)) => Ok(3),
        (2, Some(n)) => Err(format!(
            "connectivity {n} is not valid for a 2D image (use 4 or 8)"
        )),
        (3, Some(n)) => Err(format!(
            "connectivity {n} is not valid for a 3D image (use 6, 18 or 26)"
        )),
        (d, _) => Err(format!(
            "connected components need a 2D or 3D image, not {d}D"
        )),
    }
}

/// The neighbour count actually used for an image of `ndim` axes.
pub fn effective_connectivity(neighbours: Option<u32>, ndim: usize) -> u32 {
    neighbours.unwrap_or(if ndim == 2 { 8 } else { 26 })
}

/// A labelling: `labels[i]` is 0 for background or the 1-based component of voxel `i`; `sizes[l - 1]` is the
/// voxel count of component `l`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    pub labels: Vec<u32>,
    pub sizes: Vec<usize>,
}

impl Components {
    pub fn count(&self) -> usize {
        self.sizes.len()
    }
}

/// Connected components of `mask`, dropping those with fewer than `min_size` voxels (their voxels become
/// background); labels are numbered in scan order (C order of the first voxel).
pub fn label_components(
    mask: &Mask,
    neighbours: Option<u32>,
    min_size: usize,
) -> Result<Components, String> {
    let order = neighbour_order(neighbours, mask.ndim())?;
    // Pad 2D to 3D with a leading axis of 1 so one loop serves both.
    let shape3: [usize; 3] = match *mask.shape() {
        [h, w] => [1, h, w],
        [d, h, w] => [d, h, w],
        _ => unreachable!("checked by neighbour_order"),
    };
    let [d0, d1, d2] = shape3;
    let mut offsets: Vec<[isize; 3]> = Vec::new();
    let axes0: &[isize] = if mask.ndim() == 2 { &[0] } else { &[-1, 0, 1] };
    for &a in axes0 {
        for b in -1isize..=1 {
            for c in -1isize..=1 {
                let n = (a != 0) as usize + (b != 0) as usize + (c != 0) as usize;
                if n > 0 && n <= order {
                    offsets.push([a, b, c]);
                }
            }
        }
    }
    let data = mask.data();
    let mut labels = vec![0u32; data.len()];
    let mut sizes = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut members: Vec<usize> = Vec::new();
    for start in 0..data.len() {
        if !data[start] || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        labels[start] = label;
        stack.push(start);
        members.clear();
        while let Some(i) = stack.pop() {
            members.push(i);
            let (z, rem) = (i / (d1 * d2), i % (d1 * d2));
            let (y, x) = (rem / d2, rem % d2);
            for o in &offsets {
                let (nz, ny, nx) = (z as isize + o[0], y as isize + o[1], x as isize + o[2]);
                if nz < 0
                    || ny < 0
                    || nx < 0
                    || nz >= d0 as isize
                    || ny >= d1 as isize
                    || nx >= d2 as isize
                {
                    continue;
                }
                let j = (nz as usize * d1 + ny as usize) * d2 + nx as usize;
                if data[j] && labels[j] == 0 {
                    labels[j] = label;
                    stack.push(j);
                }
            }
        }
        if members.len() < min_size {
            for &i in &members {
                // u32::MAX marks "seen but dropped" so the scan does not restart from these voxels.
                labels[i] = u32::MAX;
            }
        } else {
            sizes.push(members.len());
        }
    }
    for l in labels.iter_mut() {
        if *l == u32::MAX {
            *l = 0;
        }
    }
    Ok(Components { labels, sizes })
}

/// One ground-truth lesion's result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LesionDice {
    /// Voxels.
    pub size: usize,
    pub dice: f64,
    pub detected: bool,
}

/// Lesion-wise counts of one case; see the module documentation for the definitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LesionReport {
    /// The neighbour count used (4/8 in 2D, 6/18/26 in 3D).
    pub connectivity: u32,
    pub gt_lesions: usize,
    pub pred_lesions: usize,
    pub lesions_detected: usize,
    pub lesions_missed: usize,
    pub false_positive_lesions: usize,
    /// Per ground-truth lesion, largest first.
    pub lesions: Vec<LesionDice>,
    /// Predicted component sizes, largest first.
    pub pred_sizes: Vec<usize>,
}

/// The lesion counts the scores are computed from. They add up over cases, so pooled scores over many images (lesion
/// recall of a whole validation set) are [`LesionCounts::merge`] of the per-case counts, then a score: the same
/// definitions as one case, with sums in numerator and denominator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionCounts {
    pub gt_lesions: usize,
    pub pred_lesions: usize,
    pub lesions_detected: usize,
    pub false_positive_lesions: usize,
}

impl LesionCounts {
    pub fn merge(&mut self, other: &LesionCounts) {
        self.gt_lesions += other.gt_lesions;
        self.pred_lesions += other.pred_lesions;
        self.lesions_detected += other.lesions_detected;
        self.false_positive_lesions += other.false_positive_lesions;
    }
    /// Detected / ground-truth lesions; `None` without ground-truth lesions.
    pub fn recall(&self) -> Option<f64> {
        (self.gt_lesions > 0).then(|| self.lesions_detected as f64 / self.gt_lesions as f64)
    }
    /// Predicted lesions touching the ground truth / predicted lesions; `None` without predicted lesions.
    pub fn precision(&self) -> Option<f64> {
        (self.pred_lesions > 0).then(|| {
            (self.pred_lesions - self.false_positive_lesions) as f64 / self.pred_lesions as f64
        })
    }
    /// Harmonic mean of precision and recall; `None` when either is undefined.
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        Some(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        })
    }
}

impl LesionReport {
    pub fn counts(&self) -> LesionCounts {
        LesionCounts {
            gt_lesions: self.gt_lesions,
            pred_lesions: self.pred_lesions,
            lesions_detected: self.lesions_detected,
            false_positive_lesions: self.false_positive_lesions,
        }
    }
    pub fn lesion_recall(&self) -> Option<f64> {
        self.counts().recall()
    }
    pub fn lesion_precision(&self) -> Option<f64> {
        self.counts().precision()
    }
    pub fn lesion_f1(&self) -> Option<f64> {
        self.counts().f1()
    }
    /// Ground-truth component sizes in label order.
    pub fn gt_sizes(&self) -> Vec<usize> {
        self.lesions.iter().map(|l| l.size).collect()
    }
}

/// Lesion-wise metrics of `pred` against `gt` (same shape). Errors only on an invalid connectivity for the
/// image's dimensionality.
pub fn lesion_metrics(
    pred: &Mask,
    gt: &Mask,
    settings: &LesionSettings,
) -> Result<LesionReport, String> {
    lesion_metrics_in(UnionCrop::new(pred, gt).as_ref(), gt.ndim(), settings)
}

/// [`lesion_metrics`] on the union crop of a case (`None`: both masks empty) of an `ndim`-dimensional image.
pub fn lesion_metrics_in(
    crop: Option<&UnionCrop>,
    ndim: usize,
    settings: &LesionSettings,
) -> Result<LesionReport, String> {
    // Components lie inside the bounding box of both masks, and C order inside the box is the order of the full
    // image, so labelling the cropped masks gives the same components, numbered alike, at a fraction of the cost.
    let empty;
    let (gt_box, pred_box) = match crop {
        Some(c) => (&c.gt, &c.pred),
        None => {
            empty = Mask::new(vec![1; ndim], vec![1.0; ndim], vec![false]);
            (&empty, &empty)
        }
    };
    let (g, p) = rayon::join(
        || label_components(gt_box, settings.connectivity, settings.min_lesion_size),
        || label_components(pred_box, settings.connectivity, settings.min_lesion_size),
    );
    let (g, p) = (g?, p?);
    let (ng, np) = (g.count(), p.count());
    // Overlap voxels per gt lesion, and which (gt, pred) component pairs touch.
    let mut overlap = vec![0usize; ng];
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for (&lg, &lp) in g.labels.iter().zip(&p.labels) {
        if lg != 0 && lp != 0 {
            overlap[lg as usize - 1] += 1;
            if pairs.last() != Some(&(lg, lp)) {
                pairs.push((lg, lp));
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut pred_hits = vec![false; np];
    let mut pred_volume_touching = vec![0usize; ng];
    for &(lg, lp) in &pairs {
        pred_hits[lp as usize - 1] = true;
        pred_volume_touching[lg as usize - 1] += p.sizes[lp as usize - 1];
    }
    let mut lesions: Vec<LesionDice> = (0..ng)
        .map(|i| {
            let size = g.sizes[i];
            let dice = 2.0 * overlap[i] as f64 / (size + pred_volume_touching[i]) as f64;
            LesionDice {
                size,
                dice,
                detected: overlap[i] > 0,
            }
        })
        .collect();
    let detected = lesions.iter().filter(|l| l.detected).count();
    let false_positive = pred_hits.iter().filter(|&&h| !h).count();
    // Largest first: labels follow the scan order, which depends on the axis order the file is stored in; entries
    // equal in all fields are interchangeable, so this order is the same for any storage order.
    lesions.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then(b.dice.total_cmp(&a.dice))
            .then(b.detected.cmp(&a.detected))
    });
    let mut pred_sizes = p.sizes;
    pred_sizes.sort_unstable_by(|a, b| b.cmp(a));
    Ok(LesionReport {
        connectivity: effective_connectivity(settings.connectivity, ndim),
        gt_lesions: ng,
        pred_lesions: np,
        lesions_detected: detected,
        lesions_missed: ng - detected,
        false_positive_lesions: false_positive,
        lesions,
        pred_sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask2(rows: &[&str]) -> Mask {
        let h = rows.len();
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        Mask::from_vec(vec![h, w], data)
    }

    #[test]
    fn diagonal_pixels_join_only_with_8_connectivity() {
        let m = mask2(&["#..", ".#.", "..#"]);
        assert_eq!(
            label_components(&m, Some(4), 0).unwrap().sizes,
            vec![1, 1, 1]
        );
        assert_eq!(label_components(&m, Some(8), 0).unwrap().sizes, vec![3]);
        assert_eq!(label_components(&m, None, 0).unwrap().sizes, vec![3]);
        assert!(label_components(&m, Some(6), 0)
            .unwrap_err()
            .contains("not valid for a 2D"));
    }

    #[test]
    fn connectivity_6_18_26_in_3d() {
        // Two voxels sharing an edge, and a third sharing only a corner with the second.
        let mut m = Mask::zeros(vec![3, 3, 3], vec![1.0; 3]);
        let idx = |z: usize, y: usize, x: usize| (z * 3 + y) * 3 + x;
        m.data_mut()[idx(0, 0, 0)] = true;
        m.data_mut()[idx(0, 1, 1)] = true;
        m.data_mut()[idx(1, 2, 2)] = true;
        assert_eq!(label_components(&m, Some(6), 0).unwrap().count(), 3);
        assert_eq!(label_components(&m, Some(18), 0).unwrap().count(), 2);
        assert_eq!(label_components(&m, Some(26), 0).unwrap().count(), 1);
    }

    #[test]
    fn zero_padding_changes_nothing() {
        // lesion_metrics labels the masks cropped to their union's box: the result must not depend on the
        // background around them (order of per-lesion entries included).
        let gt = mask2(&["##....#", "##....#", ".......", "...##.."]);
        let pred = mask2(&["#.....#", ".......", "..#....", "...###."]);
        let pad = |m: &Mask| {
            let (h, w) = (m.shape()[0], m.shape()[1]);
            let mut data = vec![false; (h + 5) * (w + 9)];
            for y in 0..h {
                for x in 0..w {
                    data[(y + 3) * (w + 9) + x + 4] = m.data()[y * w + x];
                }
            }
            Mask::from_vec(vec![h + 5, w + 9], data)
        };
        for conn in [Some(4), Some(8)] {
            let s = LesionSettings {
                connectivity: conn,
                ..Default::default()
            };
            let a = lesion_metrics(&pred, &gt, &s).unwrap();
            let b = lesion_metrics(&pad(&pred), &pad(&gt), &s).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.gt_lesions, 3);
        }
        let empty = Mask::from_vec(vec![4, 7], vec![false; 28]);
        let e = lesion_metrics(&empty, &empty, &LesionSettings::default()).unwrap();
        assert_eq!((e.gt_lesions, e.pred_lesions), (0, 0));
    }

    #[test]
    fn lesion_counts_and_per_lesion_dice() {
        let gt = mask2(&["##....#", "##....#", ".......", "...##.."]);
        let pr = mask2(&["#.....#", ".......", "......#", "......."]);
        let r = lesion_metrics(&pr, &gt, &LesionSettings::default()).unwrap();
        assert_eq!((r.gt_lesions, r.pred_lesions), (3, 3));
        assert_eq!(
            (
                r.lesions_detected,
                r.lesions_missed,
                r.false_positive_lesions
            ),
            (2, 1, 1)
        );
        // Lesion 1: 4 voxels, overlap 1 with a 1-voxel prediction: 2*1/(4+1).
        assert!((r.lesions[0].dice - 0.4).abs() < 1e-12);
        // Lesion 2: 2 voxels, overlap 1 with a 1-voxel component: 2/3.
        assert!((r.lesions[1].dice - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((r.lesions[2].dice, r.lesions[2].detected), (0.0, false));
        assert!((r.lesion_recall().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.lesion_precision().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Dropping 1-voxel components removes the matching predictions too.
        let r = lesion_metrics(
            &pr,
            &gt,
            &LesionSettings {
                connectivity: None,
                min_lesion_size: 2,
            },
        )
        .unwrap();
        assert_eq!(
            (r.gt_lesions, r.pred_lesions, r.lesions_detected),
            (3, 0, 0)
        );
        assert_eq!(r.lesion_precision(), None);
    }

    #[test]
    fn counts_merge_over_cases_then_divide() {
        let gt_a = mask2(&["##....#", "##....#", ".......", "...##.."]);
        let pr_a = mask2(&["#.....#", ".......", "......#", "......."]);
        let gt_b = mask2(&["#......", ".......", "......."]);
        let pr_b = mask2(&["#......", ".......", "......."]);
        let s = LesionSettings::default();
        let a = lesion_metrics(&pr_a, &gt_a, &s).unwrap().counts();
        let b = lesion_metrics(&pr_b, &gt_b, &s).unwrap().counts();
        let mut m = LesionCounts::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(
            m,
            LesionCounts {
                gt_lesions: 4,
                pred_lesions: 4,
                lesions_detected: 3,
                false_positive_lesions: 1,
            }
        );
        // Pooled 3/4, not the mean of the per-case recalls (2/3 and 1).
        assert_eq!(m.recall(), Some(0.75));
        assert_eq!(m.precision(), Some(0.75));
        assert!((m.f1().unwrap() - 0.75).abs() < 1e-12);
        // The empty sum has no lesions: every score is undefined.
        let empty = LesionCounts::default();
        assert_eq!(
            (empty.recall(), empty.precision(), empty.f1()),
            (None, None, None)
        );
    }

    #[test]
    fn perfect_predictions_score_one_when_merged() {
        let s = LesionSettings::default();
        let cases = [
            mask2(&["#..#", "....", "##.#"]),
            mask2(&["....", "....", "...."]),
            mask2(&[".#..", "###.", ".#.."]),
        ];
        let mut m = LesionCounts::default();
        for gt in &cases {
            m.merge(&lesion_metrics(gt, gt, &s).unwrap().counts());
        }
        assert_eq!((m.gt_lesions, m.false_positive_lesions), (5, 0));
        assert_eq!(
            (m.recall(), m.precision(), m.f1()),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        // A prediction that misses everything: recall 0, precision undefined (nothing predicted).
        let mut miss = LesionCounts::default();
        for gt in &cases {
            let none = Mask::zeros(gt.shape().to_vec(), vec![1.0; 2]);
            miss.merge(&lesion_metrics(&none, gt, &s).unwrap().counts());
        }
        assert_eq!((miss.recall(), miss.precision()), (Some(0.0), None));
    }
}
