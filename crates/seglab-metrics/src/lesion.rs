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

use crate::crop::UnionCrop;
use crate::mask::{any_true, Mask};

/// Connectivity by neighbour count: 4 or 8 in 2D, 6, 18 or 26 in 3D; `None` means full (8 / 26).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionSettings {
    pub connectivity: Option<u32>,
    /// Components with fewer voxels than this are dropped before counting (0 and 1 keep everything).
    pub min_lesion_size: usize,
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
    let runs = RunLabels::of(mask, neighbours, min_size)?;
    let mut labels = vec![0u32; mask.len()];
    for (r, row) in labels.chunks_mut(runs.row_len.max(1)).enumerate() {
        for run in runs.row(r) {
            row[run.start as usize..run.end as usize].fill(run.label);
        }
    }
    Ok(Components {
        labels,
        sizes: runs.sizes,
    })
}

/// Inclusive bounding boxes `(lo, hi)` of the connected components (full connectivity) of `mask`, on a three-axis
/// grid: a 2D mask is plane 0 of axis 0.
pub(crate) fn component_boxes(mask: &Mask) -> Vec<([usize; 3], [usize; 3])> {
    let labels = RunLabels::of(mask, None, 0).expect("full connectivity is valid in 2D and 3D");
    labels.boxes(mask.shape()[mask.ndim() - 2])
}

/// A run of foreground voxels along the last axis, `start..end` within its row, and its component (1-based; 0 for
/// a component dropped by the size filter).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) label: u32,
}

/// Connected components as labelled runs: every row (all axes but the last fixed) is cut into runs of foreground,
/// runs of neighbouring rows that touch are merged with union-find. The work grows with the number of runs, not
/// with the voxels (a large lesion is a few runs per row), and overlaps between two labellings are intersections
/// of runs.
pub(crate) struct RunLabels {
    /// Voxels per row (the last axis).
    row_len: usize,
    /// Runs of row `r` are `runs[row_start[r]..row_start[r + 1]]`, in increasing `start`.
    row_start: Vec<usize>,
    runs: Vec<Run>,
    /// Voxel count of component `l` at `sizes[l - 1]`.
    pub(crate) sizes: Vec<usize>,
}

impl RunLabels {
    /// The runs of row `r` (row `z * rows_per_plane + y` of a three-axis grid).
    pub(crate) fn row(&self, r: usize) -> &[Run] {
        &self.runs[self.row_start[r]..self.row_start[r + 1]]
    }

    /// Inclusive bounding box `(lo, hi)` of each component on the three-axis grid.
    pub(crate) fn boxes(&self, rows_per_plane: usize) -> Vec<([usize; 3], [usize; 3])> {
        let mut boxes = vec![([usize::MAX; 3], [0usize; 3]); self.sizes.len()];
        for r in 0..self.row_start.len() - 1 {
            let (z, y) = (r / rows_per_plane, r % rows_per_plane);
            for run in self.row(r) {
                if run.label == 0 {
                    continue;
                }
                let (lo, hi) = &mut boxes[run.label as usize - 1];
                let (x0, x1) = (run.start as usize, run.end as usize - 1);
                *lo = [lo[0].min(z), lo[1].min(y), lo[2].min(x0)];
                *hi = [hi[0].max(z), hi[1].max(y), hi[2].max(x1)];
            }
        }
        boxes
    }

    pub(crate) fn of(
        mask: &Mask,
        neighbours: Option<u32>,
        min_size: usize,
    ) -> Result<RunLabels, String> {
        let order = neighbour_order(neighbours, mask.ndim())?;
        // A 2D image is one plane of a 3D one.
        let (planes, rows_per_plane, row_len) = match *mask.shape() {
            [h, w] => (1, h, w),
            [d, h, w] => (d, h, w),
            _ => unreachable!("checked by neighbour_order"),
        };
        let rows = planes * rows_per_plane;
        let (row_start, mut runs) = find_runs(mask.data(), rows, row_len);

        // Earlier rows a run can touch, as (plane offset, row offset, slack): two runs of rows that differ in `m`
        // of the leading coordinates touch when they overlap with `slack` = 1 if a diagonal step along the row is
        // allowed (m < order), exactly (slack 0) if it is not (m == order), never if m > order.
        let mut before: Vec<(usize, isize, u32)> = Vec::new();
        let plane_offsets: &[usize] = if planes > 1 { &[0, 1] } else { &[0] };
        for &dz in plane_offsets {
            for dy in -1isize..=1 {
                if dz == 0 && dy >= 0 {
                    continue; // the row itself and later rows
                }
                let m = (dz != 0) as usize + (dy != 0) as usize;
                if m <= order {
                    before.push((dz, dy, (m < order) as u32));
                }
            }
        }

        let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
        for r in 0..rows {
            let (z, y) = (r / rows_per_plane, r % rows_per_plane);
            let here = row_start[r]..row_start[r + 1];
            if here.is_empty() {
                continue;
            }
            for &(dz, dy, slack) in &before {
                let (Some(nz), Some(ny)) = (z.checked_sub(dz), y.checked_add_signed(dy)) else {
                    continue;
                };
                if ny >= rows_per_plane {
                    continue;
                }
                let nr = nz * rows_per_plane + ny;
                let (mut i, mut j) = (here.start, row_start[nr]);
                let (i_end, j_end) = (here.end, row_start[nr + 1]);
                // Both rows' runs are sorted and disjoint: advance the one that ends first (it cannot reach any
                // later run of the other row, which starts at least one gap further).
                while i < i_end && j < j_end {
                    let (a, b) = (runs[i], runs[j]);
                    if a.start < b.end + slack && b.start < a.end + slack {
                        union(&mut parent, i as u32, j as u32);
                    }
                    if a.end < b.end {
                        i += 1;
                    } else {
                        j += 1;
                    }
                }
            }
        }

        // Component sizes by root, then labels in scan order: runs are in C order of their first voxel, so the
        // first run met of a component holds its first voxel.
        let mut root_size = vec![0usize; runs.len()];
        for i in 0..runs.len() {
            let root = find(&mut parent, i as u32);
            parent[i] = root;
            root_size[root as usize] += (runs[i].end - runs[i].start) as usize;
        }
        const UNSEEN: u32 = u32::MAX;
        let mut root_label = vec![UNSEEN; runs.len()];
        let mut sizes = Vec::new();
        for i in 0..runs.len() {
            let root = parent[i] as usize; // set to the root by the loop above
            if root_label[root] == UNSEEN {
                root_label[root] = if root_size[root] < min_size {
                    0
                } else {
                    sizes.push(root_size[root]);
                    sizes.len() as u32
                };
            }
            runs[i].label = root_label[root];
        }
        Ok(RunLabels {
            row_len,
            row_start,
            runs,
            sizes,
        })
    }
}

/// The foreground runs of every row, in parallel over groups of rows.
fn find_runs(data: &[bool], rows: usize, row_len: usize) -> (Vec<usize>, Vec<Run>) {
    use rayon::prelude::*;
    const ROWS_PER_TASK: usize = 256;
    let parts: Vec<(Vec<usize>, Vec<Run>)> = (0..rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let rows = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows);
            let mut counts = Vec::with_capacity(rows.len());
            let mut runs = Vec::new();
            for r in rows {
                let before = runs.len();
                let row = &data[r * row_len..(r + 1) * row_len];
                if any_true(row) {
                    let mut x = 0;
                    while let Some(s) = row[x..].iter().position(|&b| b) {
                        let start = x + s;
                        let len = row[start..]
                            .iter()
                            .position(|&b| !b)
                            .unwrap_or(row_len - start);
                        runs.push(Run {
                            start: start as u32,
                            end: (start + len) as u32,
                            label: 0,
                        });
                        x = start + len;
                    }
                }
                counts.push(runs.len() - before);
            }
            (counts, runs)
        })
        .collect();
    let mut row_start = Vec::with_capacity(rows + 1);
    row_start.push(0);
    let mut runs = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
    for (counts, part) in parts {
        for c in counts {
            row_start.push(row_start.last().unwrap() + c);
        }
        runs.extend(part);
    }
    (row_start, runs)
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let grand = parent[parent[i as usize] as usize];
        parent[i as usize] = grand;
        i = grand;
    }
    i
}

/// Joins the sets of `a` and `b` under the smaller root index.
fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        parent[hi as usize] = lo;
    }
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
        || RunLabels::of(gt_box, settings.connectivity, settings.min_lesion_size),
        || RunLabels::of(pred_box, settings.connectivity, settings.min_lesion_size),
    );
    let (g, p) = (g?, p?);
    let (ng, np) = (g.sizes.len(), p.sizes.len());
    // Overlap voxels per gt lesion, and which (gt, pred) component pairs touch: intersections of the two
    // labellings' runs, row by row (both masks are on the same grid).
    let mut overlap = vec![0usize; ng];
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for r in 0..g.row_start.len() - 1 {
        let (gr, pr) = (g.row(r), p.row(r));
        let (mut i, mut j) = (0, 0);
        while i < gr.len() && j < pr.len() {
            let (a, b) = (gr[i], pr[j]);
            let common = a.end.min(b.end).saturating_sub(a.start.max(b.start));
            if common > 0 && a.label != 0 && b.label != 0 {
                overlap[a.label as usize - 1] += common as usize;
                if pairs.last() != Some(&(a.label, b.label)) {
                    pairs.push((a.label, b.label));
                }
            }
            if a.end < b.end {
                i += 1;
            } else {
                j += 1;
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

    /// Voxel-by-voxel flood fill: the definition the run labelling must reproduce.
    fn flood_fill(mask: &Mask, neighbours: Option<u32>, min_size: usize) -> Components {
        let order = neighbour_order(neighbours, mask.ndim()).unwrap();
        let [d0, d1, d2] = match *mask.shape() {
            [h, w] => [1, h, w],
            [d, h, w] => [d, h, w],
            _ => unreachable!(),
        };
        let data = mask.data();
        let mut labels = vec![0u32; data.len()];
        let mut sizes = Vec::new();
        for start in 0..data.len() {
            if !data[start] || labels[start] != 0 {
                continue;
            }
            let label = sizes.len() as u32 + 1;
            let mut members = vec![start];
            labels[start] = label;
            let mut k = 0;
            while k < members.len() {
                let i = members[k];
                k += 1;
                let (z, y, x) = (i / (d1 * d2), (i / d2) % d1, i % d2);
                for dz in -1isize..=1 {
                    for dy in -1isize..=1 {
                        for dx in -1isize..=1 {
                            let n = (dz != 0) as usize + (dy != 0) as usize + (dx != 0) as usize;
                            let (nz, ny, nx) = (z as isize + dz, y as isize + dy, x as isize + dx);
                            if n == 0 || n > order || nz < 0 || ny < 0 || nx < 0 {
                                continue;
                            }
                            let (nz, ny, nx) = (nz as usize, ny as usize, nx as usize);
                            if nz >= d0 || ny >= d1 || nx >= d2 {
                                continue;
                            }
                            let j = (nz * d1 + ny) * d2 + nx;
                            if data[j] && labels[j] == 0 {
                                labels[j] = label;
                                members.push(j);
                            }
                        }
                    }
                }
            }
            if members.len() < min_size {
                members.iter().for_each(|&i| labels[i] = u32::MAX);
            } else {
                sizes.push(members.len());
            }
        }
        labels
            .iter_mut()
            .filter(|l| **l == u32::MAX)
            .for_each(|l| *l = 0);
        Components { labels, sizes }
    }

    fn random_mask(shape: &[usize], density: u64, seed: &mut u64) -> Mask {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 33) % 100 < density
            })
            .collect();
        Mask::from_vec(shape.to_vec(), data)
    }

    #[test]
    fn run_labelling_equals_flood_fill() {
        let mut seed = 7u64;
        let cases: [(&[usize], &[Option<u32>]); 3] = [
            (&[13, 29], &[Some(4), Some(8)]),
            (&[1, 40], &[Some(4), Some(8)]),
            (&[7, 9, 23], &[Some(6), Some(18), Some(26)]),
        ];
        for (shape, conns) in cases {
            for density in [3, 20, 45, 60, 90] {
                let (a, b) = (
                    random_mask(shape, density, &mut seed),
                    random_mask(shape, density, &mut seed),
                );
                for &conn in conns {
                    for min_size in [0, 3] {
                        let expected = flood_fill(&a, conn, min_size);
                        let got = label_components(&a, conn, min_size).unwrap();
                        assert_eq!(
                            got, expected,
                            "{shape:?} density {density} {conn:?} min {min_size}"
                        );
                        // Overlaps from runs against overlaps counted voxel by voxel.
                        let s = LesionSettings {
                            connectivity: conn,
                            min_lesion_size: min_size,
                        };
                        let report = lesion_metrics(&b, &a, &s).unwrap();
                        let pred = flood_fill(&b, conn, min_size);
                        let mut overlap = vec![0usize; expected.count()];
                        let mut touching = std::collections::BTreeSet::new();
                        for (&lg, &lp) in expected.labels.iter().zip(&pred.labels) {
                            if lg != 0 && lp != 0 {
                                overlap[lg as usize - 1] += 1;
                                touching.insert((lg, lp));
                            }
                        }
                        let hit: std::collections::BTreeSet<u32> =
                            touching.iter().map(|p| p.1).collect();
                        assert_eq!(report.false_positive_lesions, pred.count() - hit.len());
                        let mut want: Vec<(usize, f64)> = (0..expected.count())
                            .map(|i| {
                                let touching_volume: usize = touching
                                    .iter()
                                    .filter(|p| p.0 as usize == i + 1)
                                    .map(|p| pred.sizes[p.1 as usize - 1])
                                    .sum();
                                let size = expected.sizes[i];
                                (
                                    size,
                                    2.0 * overlap[i] as f64 / (size + touching_volume) as f64,
                                )
                            })
                            .collect();
                        want.sort_by(|x, y| y.0.cmp(&x.0).then(y.1.total_cmp(&x.1)));
                        let got: Vec<(usize, f64)> =
                            report.lesions.iter().map(|l| (l.size, l.dice)).collect();
                        assert_eq!(got, want);
                    }
                }
            }
        }
    }

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
