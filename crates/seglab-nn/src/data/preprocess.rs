//! Preprocessing done once at load: resize to the network side, intensity window and per-image z-score.

use serde::{Deserialize, Serialize};

use super::Sample;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadOptions {
    /// Side of the square network input every image is resized to.
    pub size: usize,
    /// Number of images in `builtin:phantoms`.
    pub phantom_count: usize,
    /// Generator seed of `builtin:phantoms` (independent of the training seeds: the data set stays fixed).
    pub phantom_seed: u64,
    /// Intensity window `[lo, hi]` applied before the z-score (e.g. CT HU `[-1000, 400]`); none by default.
    pub window: Option<[f32; 2]>,
    /// How each image's intensities are standardised. A config written before this option existed used
    /// per-channel statistics, so a missing key reads as that (its checkpoints keep predicting as trained).
    #[serde(default = "Normalization::legacy")]
    pub normalization: Normalization,
}

/// Per-image intensity standardisation of the network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Normalization {
    /// One mean and standard deviation over all channels of the image: keeps the balance between colour
    /// channels (a red polyp stays redder than the mucosa around it). Same as `ZScoreChannel` for gray images.
    // The aliases read run configs written between a81213f and 4d1c107 (stop 12), whose kebab-case named these two
    // `z-score` and `z-score-channel`.
    #[default]
    #[serde(rename = "zscore", alias = "z-score")]
    ZScore,
    /// Each channel z-scored on its own (removes colour casts, and with them the colour contrast).
    #[serde(rename = "zscore-channel", alias = "z-score-channel")]
    ZScoreChannel,
}

impl Normalization {
    fn legacy() -> Self {
        Normalization::ZScoreChannel
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            size: 128,
            phantom_count: 240,
            phantom_seed: 0,
            window: None,
            normalization: Normalization::default(),
        }
    }
}

/// A decoded image at its original resolution: `channels x height x width`.
#[derive(Clone, Debug)]
pub struct RawImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Bilinear sample of a row-major plane of width `w` between rows `y0, y1` and columns `x0, x1`, at fractions `ty`, `tx`.
pub(super) fn bilinear(
    p: &[f32],
    w: usize,
    (y0, y1, ty): (usize, usize, f32),
    (x0, x1, tx): (usize, usize, f32),
) -> f32 {
    let a = p[y0 * w + x0] * (1.0 - tx) + p[y0 * w + x1] * tx;
    let b = p[y1 * w + x0] * (1.0 - tx) + p[y1 * w + x1] * tx;
    a * (1.0 - ty) + b * ty
}

/// Bilinear resize of one plane with half-pixel centres (PyTorch `align_corners=False`); a box average when
/// shrinking by an integer factor, which is the common case here (256 -> 128).
pub fn resize_plane(src: &[f32], h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    if (h, w) == (nh, nw) {
        return src.to_vec();
    }
    if h.is_multiple_of(nh) && w.is_multiple_of(nw) {
        let (fy, fx) = (h / nh, w / nw);
        let norm = 1.0 / (fy * fx) as f32;
        let mut out = vec![0f32; nh * nw];
        for y in 0..nh {
            for x in 0..nw {
                let mut s = 0f32;
                for dy in 0..fy {
                    let row = &src[(y * fy + dy) * w + x * fx..][..fx];
                    s += row.iter().sum::<f32>();
                }
                out[y * nw + x] = s * norm;
            }
        }
        return out;
    }
    let (sy, sx) = (h as f32 / nh as f32, w as f32 / nw as f32);
    let mut out = vec![0f32; nh * nw];
    for y in 0..nh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let ty = fy - y0 as f32;
        for x in 0..nw {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let tx = fx - x0 as f32;
            out[y * nw + x] = bilinear(src, w, (y0, y1, ty), (x0, x1, tx));
        }
    }
    out
}

/// The network input for a raw image: each channel resized to `opts.size` (after the optional window), then
/// z-scored as `opts.normalization` says. `predict` calls this too, so training and inference see identical
/// preprocessing.
pub fn preprocess(raw: &RawImage, opts: &LoadOptions) -> Vec<f32> {
    let (size, plane) = (opts.size, raw.height * raw.width);
    let mut out = Vec::with_capacity(raw.channels * size * size);
    for c in 0..raw.channels {
        let mut src = raw.data[c * plane..(c + 1) * plane].to_vec();
        if let Some([lo, hi]) = opts.window {
            src.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        }
        out.extend_from_slice(&resize_plane(&src, raw.height, raw.width, size, size));
    }
    let groups = match opts.normalization {
        Normalization::ZScore => 1,
        Normalization::ZScoreChannel => raw.channels,
    };
    for r in out.chunks_mut((raw.channels * size * size / groups).max(1)) {
        let n = r.len() as f64;
        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // A constant image becomes all zeros rather than NaN.
        let inv = if var > 1e-12 { 1.0 / var.sqrt() } else { 0.0 };
        r.iter_mut()
            .for_each(|v| *v = ((*v as f64 - mean) * inv) as f32);
    }
    out
}

/// Resize a 0/1 mask: bilinear on 0/1 then `>= 0.5`.
pub fn resize_mask(mask: &[u8], h: usize, w: usize, nh: usize, nw: usize) -> Vec<u8> {
    if (h, w) == (nh, nw) {
        return mask.to_vec();
    }
    let f: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
    resize_plane(&f, h, w, nh, nw)
        .iter()
        .map(|&v| (v >= 0.5) as u8)
        .collect()
}

pub(super) fn make_sample(
    id: String,
    case: String,
    raw: RawImage,
    h: usize,
    w: usize,
    mask: &[u8],
    opts: &LoadOptions,
) -> Sample {
    let image = preprocess(&raw, opts);
    let mask = resize_mask(mask, h, w, opts.size, opts.size);
    let fg_pixels = mask.iter().filter(|&&m| m == 1).count();
    Sample {
        id,
        case,
        image,
        mask,
        fg_pixels,
    }
}
