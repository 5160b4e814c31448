//! Training batches (epoch plans, foreground oversampling, augmentation) and validation batches.

use super::preprocess::bilinear;
use super::{AugmentConfig, Dataset};
use crate::rng::Rng;

/// A batch ready for the tensor: `x` is `n x channels x side x side`, `t` is `n x 1 x side x side` (0/1).
#[derive(Clone, Debug)]
pub struct Batch {
    pub n: usize,
    pub side: usize,
    pub x: Vec<f32>,
    pub t: Vec<f32>,
}

impl Batch {
    /// The batch at half the side (the side must be even): each image plane by the mean of its 2x2 blocks, each
    /// mask by majority (a block is lesion when at least two of its four pixels are), so the target stays 0/1.
    pub fn halved(&self) -> Batch {
        let (s, h) = (self.side, self.side / 2);
        debug_assert!(s.is_multiple_of(2), "halved needs an even side, got {s}");
        // The same 2x2 box average as `resize_plane`, summed in this order on purpose: the recorded kvasir runs
        // (BENCHMARKS.md, stop 13) were trained with it, and `resize_plane`'s row-by-row sums round differently.
        let halve =
            |src: &[f32]| -> Vec<f32> {
                let mut out = Vec::with_capacity(src.len() / 4);
                for plane in src.chunks_exact(s * s) {
                    for y in 0..h {
                        let (r0, r1) = (&plane[2 * y * s..], &plane[(2 * y + 1) * s..]);
                        out.extend((0..h).map(|x| {
                            0.25 * (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1])
                        }));
                    }
                }
                out
            };
        let t = halve(&self.t)
            .into_iter()
            .map(|v| if v >= 0.5 { 1.0 } else { 0.0 })
            .collect();
        Batch {
            n: self.n,
            side: h,
            x: halve(&self.x),
            t,
        }
    }
}

/// The epoch's batches as sample indices: a shuffled pass over `train` in batches of `batch_size` (the last,
/// incomplete batch is dropped so BatchNorm never sees a batch of one; shuffling changes which samples wait),
/// with the foreground-oversampling replacements applied; each index then repeated `aug.repeats` times.
pub fn epoch_plan(
    ds: &Dataset,
    train: &[usize],
    batch_size: usize,
    aug: &AugmentConfig,
    rng: &mut Rng,
) -> Vec<Vec<usize>> {
    let mut order = train.to_vec();
    rng.shuffle(&mut order);
    let lesion: Vec<usize> = train
        .iter()
        .copied()
        .filter(|&i| ds.samples[i].fg_pixels > 0)
        .collect();
    let steps = (order.len() / batch_size).max(1);
    (0..steps)
        .map(|s| {
            (0..batch_size)
                .map(|k| {
                    let i = order[(s * batch_size + k) % order.len()];
                    if !lesion.is_empty()
                        && rng.bool(aug.fg_oversample)
                        && ds.samples[i].fg_pixels == 0
                    {
                        lesion[rng.below(lesion.len())]
                    } else {
                        i
                    }
                })
                .flat_map(|i| std::iter::repeat_n(i, aug.repeats.max(1)))
                .collect()
        })
        .collect()
}

/// Builds one batch; `rng` drives crops and augmentation.
pub fn make_batch(ds: &Dataset, idx: &[usize], aug: &AugmentConfig, rng: &mut Rng) -> Batch {
    let size = ds.size;
    let c = ds.channels;
    let side = aug.batch_side(size);
    let plane = side * side;
    let mut x = vec![0f32; idx.len() * c * plane];
    let mut t = vec![0f32; idx.len() * plane];
    let mut buf = vec![0f32; plane];
    for (b, &i) in idx.iter().enumerate() {
        let s = &ds.samples[i];
        // Patch origin: centred on a random lesion pixel for an oversampled slot, else uniform.
        let (oy, ox) = if side < size {
            let centred = s.fg_pixels > 0 && rng.bool(aug.fg_oversample);
            let (cy, cx) = if centred {
                let k = rng.below(s.fg_pixels);
                let p = s
                    .mask
                    .iter()
                    .enumerate()
                    .filter(|(_, &m)| m == 1)
                    .nth(k)
                    .map(|(p, _)| p)
                    .unwrap_or(0);
                (p / size, p % size)
            } else {
                (rng.below(size), rng.below(size))
            };
            let clamp = |v: usize| v.saturating_sub(side / 2).min(size - side);
            (clamp(cy), clamp(cx))
        } else {
            (0, 0)
        };
        let on = aug.enabled;
        let flip_y = on && aug.flips && rng.bool(0.5);
        let flip_x = on && aug.flips && rng.bool(0.5);
        let rot = if on && aug.rot90 { rng.below(4) } else { 0 };
        // Drawn only when enabled, so runs without zoom keep their random streams.
        let zoom = if on && aug.scale > 0.0 {
            let l = (1.0 + aug.scale as f64).ln();
            rng.range(-l, l).exp()
        } else {
            1.0
        };
        let zoomed;
        let (image, mask): (&[f32], &[u8]) = if zoom != 1.0 {
            zoomed = zoom_sample(&s.image, &s.mask, c, size, zoom);
            (&zoomed.0, &zoomed.1)
        } else {
            (&s.image, &s.mask)
        };
        let (scale, shift) = if on && aug.intensity > 0.0 {
            let j = aug.intensity as f64;
            (1.0 + rng.range(-j, j) as f32, rng.range(-j, j) as f32)
        } else {
            (1.0, 0.0)
        };
        // Drawn only when enabled, so runs without colour jitter keep their random streams.
        let gains: Vec<f32> = (0..c)
            .map(|_| {
                if on && aug.colour > 0.0 && c > 1 {
                    let j = aug.colour as f64;
                    1.0 + rng.range(-j, j) as f32
                } else {
                    1.0
                }
            })
            .collect();
        // Output pixel (y, x) reads source pixel map(y, x): rotation then flips, all on the patch grid.
        let src_of = |y: usize, xx: usize| -> usize {
            let (mut sy, mut sx) = match rot {
                1 => (xx, side - 1 - y),
                2 => (side - 1 - y, side - 1 - xx),
                3 => (side - 1 - xx, y),
                _ => (y, xx),
            };
            if flip_y {
                sy = side - 1 - sy;
            }
            if flip_x {
                sx = side - 1 - sx;
            }
            (oy + sy) * size + ox + sx
        };
        for ch in 0..c {
            let src = &image[ch * size * size..(ch + 1) * size * size];
            let gain = scale * gains[ch];
            for y in 0..side {
                for xx in 0..side {
                    buf[y * side + xx] = src[src_of(y, xx)] * gain + shift;
                }
            }
            x[(b * c + ch) * plane..(b * c + ch + 1) * plane].copy_from_slice(&buf);
        }
        for y in 0..side {
            for xx in 0..side {
                t[b * plane + y * side + xx] = mask[src_of(y, xx)] as f32;
            }
        }
    }
    Batch {
        n: idx.len(),
        side,
        x,
        t,
    }
}

/// `image` (`channels` planes) and `mask` of side `size` zoomed by `zoom` about the centre: output pixel `p` reads
/// source position `centre + (p - centre) / zoom`, bilinear for the image and nearest for the mask; positions
/// outside the source are 0 (the z-scored mean; no lesion).
pub(super) fn zoom_sample(
    image: &[f32],
    mask: &[u8],
    channels: usize,
    size: usize,
    zoom: f64,
) -> (Vec<f32>, Vec<u8>) {
    let centre = (size as f64 - 1.0) / 2.0;
    let src = |p: usize| centre + (p as f64 - centre) / zoom;
    let plane = size * size;
    let mut out = vec![0f32; channels * plane];
    let mut out_mask = vec![0u8; plane];
    let last = (size - 1) as f64;
    for y in 0..size {
        let fy = src(y);
        for x in 0..size {
            let fx = src(x);
            if fy < -0.5 || fx < -0.5 || fy > last + 0.5 || fx > last + 0.5 {
                continue;
            }
            let (ny, nx) = (
                fy.round().clamp(0.0, last) as usize,
                fx.round().clamp(0.0, last) as usize,
            );
            out_mask[y * size + x] = mask[ny * size + nx];
            let (cy, cx) = (fy.clamp(0.0, last), fx.clamp(0.0, last));
            let (y0, x0) = (cy.floor() as usize, cx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(size - 1), (x0 + 1).min(size - 1));
            let (wy, wx) = ((cy - y0 as f64) as f32, (cx - x0 as f64) as f32);
            for ch in 0..channels {
                let p = &image[ch * plane..(ch + 1) * plane];
                out[ch * plane + y * size + x] = bilinear(p, size, (y0, y1, wy), (x0, x1, wx));
            }
        }
    }
    (out, out_mask)
}

/// Validation batches: whole images, no augmentation, in dataset order.
pub fn eval_batch(ds: &Dataset, idx: &[usize]) -> Batch {
    let aug = AugmentConfig {
        enabled: false,
        patch: None,
        fg_oversample: 0.0,
        ..Default::default()
    };
    make_batch(ds, idx, &aug, &mut Rng::new(0))
}
