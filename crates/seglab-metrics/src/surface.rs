//! Surfaces of binary masks, restricted to the bounding box of both masks.
//!
//! Two surface models, as in the reference libraries:
//! - voxel surfaces (MedPy, MONAI default): mask XOR its erosion by the face-connected cross, with everything
//!   outside the image counted as background;
//! - surfels (DeepMind surface-distance, MONAI `use_subvoxels=True`): every corner of the voxel grid gets the
//!   code of its 2x2 (2D) or 2x2x2 (3D) neighbourhood; corners whose neighbourhood is mixed carry a contour
//!   segment / marching-cubes surface patch whose length / area comes from DeepMind's lookup tables.
//!
//! Everything is computed internally on 3D grids; a 2D mask is a 3D grid with a leading axis of length 1 that is
//! not an image axis (no border, no neighbours along it).
use rayon::prelude::*;

use crate::mask::Mask;
use crate::surfel_table::NEIGHBOUR_CODE_TO_NORMALS;

/// A 3D view of a mask's geometry: shape and spacing padded to three axes.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub ndim: usize,
    pub shape: [usize; 3],
    pub spacing: [f64; 3],
}

impl Geometry {
    pub fn of(mask: &Mask) -> Self {
        let ndim = mask.ndim();
        assert!(
            ndim == 2 || ndim == 3,
            "surface distances need a 2D or 3D mask, got {ndim}D"
        );
        let mut shape = [1usize; 3];
        let mut spacing = [1.0f64; 3];
        let off = 3 - ndim;
        shape[off..].copy_from_slice(mask.shape());
        spacing[off..].copy_from_slice(mask.spacing());
        Geometry {
            ndim,
            shape,
            spacing,
        }
    }

    /// The first axis that is an image axis.
    pub fn first_axis(&self) -> usize {
        3 - self.ndim
    }
}

/// Voxel surface on a grid: a lesion voxel with a face neighbour that is background or outside the grid.
///
/// On a crop of the bounding box this equals the full-image surface: a neighbour outside the box is background
/// whether or not it is inside the image.
pub(crate) fn voxel_surface(m: &[bool], shape: [usize; 3], first_axis: usize) -> Vec<bool> {
    let [n0, n1, n2] = shape;
    let plane = n1 * n2;
    let mut out = vec![false; m.len()];
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, out_plane)| {
            let axis0_border = first_axis == 0 && (i == 0 || i + 1 == n0);
            for j in 0..n1 {
                let base = i * plane + j * n2;
                let row = &m[base..base + n2];
                let out_row = &mut out_plane[j * n2..(j + 1) * n2];
                if axis0_border || j == 0 || j + 1 == n1 {
                    out_row.copy_from_slice(row);
                    continue;
                }
                let (up, down) = (&m[base - n2..base], &m[base + n2..base + 2 * n2]);
                let (below, above) = if first_axis == 0 {
                    (
                        &m[base - plane..base - plane + n2],
                        &m[base + plane..base + plane + n2],
                    )
                } else {
                    (row, row)
                };
                for k in 0..n2 {
                    let interior = k > 0
                        && k + 1 < n2
                        && row[k - 1]
                        && row[k + 1]
                        && up[k]
                        && down[k]
                        && below[k]
                        && above[k];
                    out_row[k] = row[k] && !interior;
                }
            }
        });
    out
}

/// Surfel length (2D, 16 codes) or area (3D, 256 codes) per neighbourhood code for this spacing, computed as
/// DeepMind's `create_table_neighbour_code_to_contour_length` / `..._to_surface_area` do.
pub(crate) fn surfel_area_table(geo: &Geometry) -> Vec<f64> {
    if geo.ndim == 2 {
        let (v, h) = (geo.spacing[1], geo.spacing[2]);
        let diag = 0.5 * (v * v + h * h).sqrt();
        let mut t = vec![0.0; 16];
        for (code, len) in [
            (0b0001, diag),
            (0b0010, diag),
            (0b0011, h),
            (0b0100, diag),
            (0b0101, v),
            (0b0110, 2.0 * diag),
            (0b0111, diag),
            (0b1000, diag),
            (0b1001, 2.0 * diag),
            (0b1010, v),
            (0b1011, diag),
            (0b1100, h),
            (0b1101, diag),
            (0b1110, diag),
        ] {
            t[code] = len;
        }
        t
    } else {
        let s = geo.spacing;
        NEIGHBOUR_CODE_TO_NORMALS
            .iter()
            .map(|normals| {
                let mut sum = 0.0;
                for n in normals.iter() {
                    let x = n[0] * s[1] * s[2];
                    let y = n[1] * s[0] * s[2];
                    let z = n[2] * s[0] * s[1];
                    sum += (x * x + y * y + z * z).sqrt();
                }
                sum
            })
            .collect()
    }
}

/// Neighbourhood codes on the corner grid of a crop that has one padding voxel at the high end of each image
/// axis (DeepMind `_crop_to_bounding_box` + `ndimage.correlate(..., mode="constant")` with kernel
/// `[[[128, 64], [32, 16]], [[8, 4], [2, 1]]]` in 3D, `[[8, 4], [2, 1]]` in 2D).
///
/// The code at corner `(i, j, k)` reads voxels `i-1..=i`, `j-1..=j`, `k-1..=k` (outside the crop = 0). Within
/// one plane the four voxels give a 4-bit code (2D kernel); in 3D the plane below supplies the high four bits.
pub(crate) fn neighbour_codes(m: &[bool], shape: [usize; 3], first_axis: usize) -> Vec<u8> {
    let [_, n1, n2] = shape;
    let plane = n1 * n2;
    let mut codes = vec![0u8; m.len()];
    codes
        .par_chunks_mut(plane)
        .zip(m.par_chunks(plane))
        .for_each(|(out, mp)| {
            let mut prev_pair = vec![0u8; n2];
            let mut pair = vec![0u8; n2];
            for j in 0..n1 {
                let row = &mp[j * n2..(j + 1) * n2];
                // pair[k] = (row[k-1] << 1) | row[k]
                let mut left = 0u8;
                for (p, &v) in pair.iter_mut().zip(row) {
                    *p = (left << 1) | v as u8;
                    left = v as u8;
                }
                for ((o, &a), &b) in out[j * n2..(j + 1) * n2]
                    .iter_mut()
                    .zip(&prev_pair)
                    .zip(&pair)
                {
                    *o = (a << 2) | b;
                }
                std::mem::swap(&mut prev_pair, &mut pair);
            }
        });
    if first_axis == 0 {
        // Combine plane codes from the top down so each plane still reads its unmodified lower neighbour.
        for i in (1..shape[0]).rev() {
            let (lower, upper) = codes.split_at_mut(i * plane);
            let lower = &lower[(i - 1) * plane..];
            upper[..plane]
                .par_chunks_mut(4096)
                .zip(lower.par_chunks(4096))
                .for_each(|(u, l)| {
                    for (x, &y) in u.iter_mut().zip(l) {
                        *x |= (y & 0x0f) << 4;
                    }
                });
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crop::{union_bbox, BBox};

    fn random(n: usize, seed: &mut u64) -> Vec<bool> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                !seed.is_multiple_of(3)
            })
            .collect()
    }

    /// Direct reading of the correlation: bit `7 - (4a + 2b + c)` set when voxel `(i+a-1, j+b-1, k+c-1)` is set.
    fn naive_codes(m: &[bool], shape: [usize; 3], first_axis: usize) -> Vec<u8> {
        let at = |i: isize, j: isize, k: isize| {
            i >= 0
                && j >= 0
                && k >= 0
                && (i as usize) < shape[0]
                && (j as usize) < shape[1]
                && (k as usize) < shape[2]
                && m[((i as usize) * shape[1] + j as usize) * shape[2] + k as usize]
        };
        let mut out = Vec::new();
        for i in 0..shape[0] as isize {
            for j in 0..shape[1] as isize {
                for k in 0..shape[2] as isize {
                    let mut code = 0u8;
                    let planes: &[isize] = if first_axis == 0 { &[0, 1] } else { &[1] };
                    for &a in planes {
                        for b in 0..2 {
                            for c in 0..2 {
                                if at(i + a - 1, j + b - 1, k + c - 1) {
                                    let bit = if first_axis == 0 {
                                        7 - (4 * a + 2 * b + c)
                                    } else {
                                        3 - (2 * b + c)
                                    };
                                    code |= 1 << bit;
                                }
                            }
                        }
                    }
                    out.push(code);
                }
            }
        }
        out
    }

    fn naive_surface(m: &[bool], shape: [usize; 3], first_axis: usize) -> Vec<bool> {
        let strides = [shape[1] * shape[2], shape[2], 1];
        (0..m.len())
            .map(|idx| {
                let c = [
                    idx / strides[0],
                    (idx / strides[1]) % shape[1],
                    idx % shape[2],
                ];
                m[idx]
                    && (first_axis..3).any(|a| {
                        c[a] == 0
                            || c[a] + 1 == shape[a]
                            || !m[idx - strides[a]]
                            || !m[idx + strides[a]]
                    })
            })
            .collect()
    }

    #[test]
    fn union_bbox_is_the_box_of_every_true_voxel() {
        let mut seed = 0x9E37_79B9u64;
        for shape in [[1usize, 9, 13], [7, 5, 11], [12, 3, 4]] {
            let n: usize = shape.iter().product();
            for density in [1u64, 40, 400] {
                // Sparse masks: a few true voxels, so boxes are not the whole grid.
                let sparse = |seed: &mut u64| -> Vec<bool> {
                    let r = random(n, seed);
                    r.iter()
                        .zip(random(n, seed))
                        .enumerate()
                        .map(|(i, (&a, b))| {
                            a && b && ((i as u64 * 2654435761) ^ *seed).is_multiple_of(density)
                        })
                        .collect()
                };
                let (a, b) = (sparse(&mut seed), sparse(&mut seed));
                let mut expected: Option<BBox> = None;
                for i in 0..n {
                    if a[i] || b[i] {
                        let c = [
                            i / (shape[1] * shape[2]),
                            (i / shape[2]) % shape[1],
                            i % shape[2],
                        ];
                        let e = expected.get_or_insert(BBox { lo: c, hi: c });
                        for (k, &ck) in c.iter().enumerate() {
                            e.lo[k] = e.lo[k].min(ck);
                            e.hi[k] = e.hi[k].max(ck);
                        }
                    }
                }
                assert_eq!(union_bbox(&a, &b, shape), expected, "{shape:?} {density}");
            }
        }
        assert_eq!(union_bbox(&[false; 12], &[false; 12], [2, 2, 3]), None);
    }

    #[test]
    fn fast_codes_and_surfaces_match_their_definitions() {
        let mut seed = 99u64;
        for (shape, first_axis) in [
            ([1, 7, 9], 1),
            ([1, 1, 5], 1),
            ([4, 5, 6], 0),
            ([2, 3, 2], 0),
            ([6, 1, 8], 0),
        ] {
            for _ in 0..5 {
                let m = random(shape.iter().product(), &mut seed);
                assert_eq!(
                    neighbour_codes(&m, shape, first_axis),
                    naive_codes(&m, shape, first_axis),
                    "{shape:?}"
                );
                assert_eq!(
                    voxel_surface(&m, shape, first_axis),
                    naive_surface(&m, shape, first_axis),
                    "{shape:?}"
                );
            }
        }
    }
}
