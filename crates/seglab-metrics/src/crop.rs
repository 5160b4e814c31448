//! The union crop: both masks cut to the bounding box of their union (one crop per case serves the distance and
//! the lesion metrics), and the box arithmetic behind it.
use rayon::prelude::*;

use crate::mask::{any_true, Mask};
use crate::surface::Geometry;

/// Inclusive bounding box of the `true` voxels of two masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BBox {
    pub lo: [usize; 3],
    pub hi: [usize; 3],
}

impl BBox {
    pub fn extent(&self) -> [usize; 3] {
        [
            self.hi[0] - self.lo[0] + 1,
            self.hi[1] - self.lo[1] + 1,
            self.hi[2] - self.lo[2] + 1,
        ]
    }
}

/// The smallest box holding both (`None` holds nothing).
pub(crate) fn merge(x: Option<BBox>, y: Option<BBox>) -> Option<BBox> {
    match (x, y) {
        (Some(x), Some(y)) => Some(BBox {
            lo: std::array::from_fn(|i| x.lo[i].min(y.lo[i])),
            hi: std::array::from_fn(|i| x.hi[i].max(y.hi[i])),
        }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Bounding box of `a | b`, `None` when both are empty. Planes of the first axis in parallel.
pub(crate) fn union_bbox(a: &[bool], b: &[bool], shape: [usize; 3]) -> Option<BBox> {
    let [_, n1, n2] = shape;
    let plane = n1 * n2;
    a.par_chunks(plane)
        .zip(b.par_chunks(plane))
        .enumerate()
        .map(|(i0, (pa, pb))| {
            let mut found: Option<BBox> = None;
            for (i1, (ra, rb)) in pa.chunks(n2).zip(pb.chunks(n2)).enumerate() {
                if !any_true(ra) && !any_true(rb) {
                    continue;
                }
                let Some(first) = ra.iter().zip(rb).position(|(&x, &y)| x | y) else {
                    continue;
                };
                let last = n2 - 1 - ra.iter().zip(rb).rev().position(|(&x, &y)| x | y).unwrap();
                let row = BBox {
                    lo: [i0, i1, first],
                    hi: [i0, i1, last],
                };
                found = merge(found, Some(row));
            }
            found
        })
        .reduce(|| None, merge)
}

/// Both masks cut to the bounding box of their union, with one background voxel added after the high end of every
/// image axis: surfels live on the voxel-corner grid, one point longer than the box. Voxel surfaces, surface
/// distances and connected components do not change with the crop or the padding (both are background, as the
/// rest of the image outside the box), so one crop per case serves the distance and the lesion metrics.
pub struct UnionCrop {
    /// Geometry of the full image (its spacing is the crop's).
    pub(crate) geo: Geometry,
    /// The crop grid, padded to three axes like `geo.shape`.
    pub(crate) shape: [usize; 3],
    pub(crate) pred: Mask,
    pub(crate) gt: Mask,
    /// Whether (and how) its distances run per cluster, decided on first use: several predictions of a case ask once
    /// to choose the shared path and again to score alone.
    pub(crate) clusters: std::sync::OnceLock<Option<crate::distance::ClusterBoxes>>,
}

impl UnionCrop {
    /// `None` when both masks are empty. Shapes must be equal; `gt`'s spacing is used.
    pub fn new(pred: &Mask, gt: &Mask) -> Option<UnionCrop> {
        assert_eq!(pred.shape(), gt.shape(), "pred and gt shapes differ");
        let geo = Geometry::of(gt);
        let bbox = union_bbox(pred.data(), gt.data(), geo.shape)?;
        Some(Self::with_box(pred, gt, &bbox))
    }

    /// Both masks cut to `bbox` (which must hold every `true` voxel of both), padded as [`UnionCrop::new`] pads.
    /// Several predictions of one case cut to one box share the ground truth's crop grid.
    pub(crate) fn with_box(pred: &Mask, gt: &Mask, bbox: &BBox) -> UnionCrop {
        let geo = Geometry::of(gt);
        let bbox = *bbox;
        let ((pc, shape), (gc, _)) = rayon::join(
            || crop(pred.data(), &geo, &bbox, 1),
            || crop(gt.data(), &geo, &bbox, 1),
        );
        let mask_shape = shape[geo.first_axis()..].to_vec();
        let spacing = gt.spacing().to_vec();
        UnionCrop {
            pred: Mask::new(mask_shape.clone(), spacing.clone(), pc),
            gt: Mask::new(mask_shape, spacing, gc),
            geo,
            shape,
            clusters: std::sync::OnceLock::new(),
        }
    }
}

/// Copies the box out of `data`, adding `pad` background voxels after the high end of every image axis.
pub(crate) fn crop(
    data: &[bool],
    geo: &Geometry,
    bbox: &BBox,
    pad: usize,
) -> (Vec<bool>, [usize; 3]) {
    let ext = bbox.extent();
    let mut out_shape = ext;
    for n in &mut out_shape[geo.first_axis()..] {
        *n += pad;
    }
    let [_, s1, s2] = geo.shape;
    let mut out = vec![false; out_shape.iter().product()];
    for i in 0..ext[0] {
        for j in 0..ext[1] {
            let src = ((bbox.lo[0] + i) * s1 + bbox.lo[1] + j) * s2 + bbox.lo[2];
            let dst = (i * out_shape[1] + j) * out_shape[2];
            out[dst..dst + ext[2]].copy_from_slice(&data[src..src + ext[2]]);
        }
    }
    (out, out_shape)
}
