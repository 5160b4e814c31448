//! Synthetic lesion phantoms: blobby lesions of varied size, count and contrast on a textured background, some
//! images with no lesion. One generator serves `seglab synth DIR` (written as 8-bit PNGs) and the in-memory
//! `builtin:phantoms` data set, so both hold identical pixels. Each image depends only on `(seed, index, size)`.
use crate::rng::Rng;

/// One phantom: 8-bit gray image and 0/1 mask, row-major `size x size`.
#[derive(Clone, Debug, PartialEq)]
pub struct Phantom {
    pub size: usize,
    pub image: Vec<u8>,
    pub mask: Vec<u8>,
}

/// Fraction of phantoms without any lesion.
pub const EMPTY_FRACTION: f64 = 0.15;

/// Smooth value noise: a coarse random grid, bilinearly interpolated.
fn value_noise(rng: &mut Rng, size: usize, cells: usize) -> Vec<f32> {
    let g = cells + 2;
    let grid: Vec<f32> = (0..g * g).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    let mut out = vec![0f32; size * size];
    let scale = cells as f32 / size as f32;
    for y in 0..size {
        let fy = y as f32 * scale;
        let (y0, ty) = (fy as usize, fy.fract());
        for x in 0..size {
            let fx = x as f32 * scale;
            let (x0, tx) = (fx as usize, fx.fract());
            let a = grid[y0 * g + x0] * (1.0 - tx) + grid[y0 * g + x0 + 1] * tx;
            let b = grid[(y0 + 1) * g + x0] * (1.0 - tx) + grid[(y0 + 1) * g + x0 + 1] * tx;
            out[y * size + x] = a * (1.0 - ty) + b * ty;
        }
    }
    out
}

/// A star-shaped blob: radius varies smoothly with angle through a few random harmonics.
struct Blob {
    cy: f32,
    cx: f32,
    r: f32,
    harmonics: Vec<(f32, f32, f32)>, // (order, amplitude, phase)
}

impl Blob {
    // The phase range [0, 6.283) is part of the generator's definition (the phantom set, its tests and the
    // recorded main-job results depend on it), so it is not replaced by TAU.
    #[allow(clippy::approx_constant)]
    fn random(rng: &mut Rng, size: usize, r: f32) -> Self {
        let margin = r * 1.3 + 2.0;
        let span = (size as f32 - 2.0 * margin).max(1.0);
        let harmonics = (2..=4)
            .map(|k| {
                (
                    k as f32,
                    rng.range(0.0, 0.25 / (k as f64 - 1.0)) as f32,
                    rng.range(0.0, 6.283) as f32,
                )
            })
            .collect();
        Blob {
            cy: margin + rng.uniform() as f32 * span,
            cx: margin + rng.uniform() as f32 * span,
            r,
            harmonics,
        }
    }

    /// Signed distance-like value in pixels: negative inside.
    fn level(&self, y: f32, x: f32) -> f32 {
        let (dy, dx) = (y - self.cy, x - self.cx);
        let theta = dy.atan2(dx);
        let radius = self.r
            * (1.0
                + self
                    .harmonics
                    .iter()
                    .map(|&(k, a, p)| a * (k * theta + p).sin())
                    .sum::<f32>());
        (dy * dy + dx * dx).sqrt() - radius
    }
}

pub fn phantom(seed: u64, index: usize, size: usize) -> Phantom {
    let mut rng = Rng::derive(
        seed.wrapping_add((index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
        "phantom",
    );
    let s = size as f32;
    let n = size * size;

    // Background: smooth tissue texture at two scales plus a large brighter "organ" ellipse as a distractor.
    let coarse = value_noise(&mut rng, size, 3);
    let fine = value_noise(&mut rng, size, 12);
    let base = rng.range(0.3, 0.5) as f32;
    let (oy, ox) = (
        rng.range(0.3, 0.7) as f32 * s,
        rng.range(0.3, 0.7) as f32 * s,
    );
    let (ory, orx) = (
        rng.range(0.2, 0.4) as f32 * s,
        rng.range(0.2, 0.4) as f32 * s,
    );
    let organ = rng.range(0.05, 0.15) as f32;
    let mut img: Vec<f32> = (0..n)
        .map(|i| {
            let (y, x) = ((i / size) as f32, (i % size) as f32);
            let e = ((y - oy) / ory).powi(2) + ((x - ox) / orx).powi(2);
            let inside = 1.0 / (1.0 + (8.0 * (e - 1.0)).exp());
            base + 0.12 * coarse[i] + 0.05 * fine[i] + organ * inside
        })
        .collect();

    let mut mask = vec![0u8; n];
    if !rng.bool(EMPTY_FRACTION) {
        let count = 1 + rng.below(3);
        for _ in 0..count {
            // Log-uniform radius from 2.5% to 14% of the side: small lesions are as common as large ones.
            let r = (s * (rng.range((0.025f64).ln(), (0.14f64).ln())).exp() as f32).max(1.5);
            let blob = Blob::random(&mut rng, size, r);
            // Mostly brighter lesions, some darker; contrast from subtle to obvious.
            let sign = if rng.bool(0.75) { 1.0 } else { -1.0 };
            let contrast = sign * rng.range(0.12, 0.4) as f32;
            let texture = rng.range(0.0, 0.06) as f32;
            for (i, m) in mask.iter_mut().enumerate() {
                let (y, x) = ((i / size) as f32 + 0.5, (i % size) as f32 + 0.5);
                let d = blob.level(y, x);
                if d > 3.0 {
                    continue;
                }
                // Soft edge over ~1 pixel; the mask is the blob's inside.
                let w = 1.0 / (1.0 + (2.0 * d).exp());
                img[i] += w * (contrast + texture * fine[i]);
                if d <= 0.0 {
                    *m = 1;
                }
            }
        }
    }

    let noise = rng.range(0.02, 0.06) as f32;
    let image = img
        .iter()
        .map(|&v| {
            let v = v + noise * rng.normal() as f32;
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect();
    Phantom { size, image, mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(phantom(1, 3, 64), phantom(1, 3, 64));
        assert_ne!(phantom(1, 3, 64).image, phantom(1, 4, 64).image);
        assert_ne!(phantom(1, 3, 64).image, phantom(2, 3, 64).image);
        let fg: Vec<usize> = (0..40)
            .map(|i| phantom(0, i, 64).mask.iter().filter(|&&m| m == 1).count())
            .collect();
        let empty = fg.iter().filter(|&&c| c == 0).count();
        assert!((1..=14).contains(&empty), "empty images: {empty} of 40");
        let (min, max) = (
            fg.iter().filter(|&&c| c > 0).min().unwrap(),
            fg.iter().max().unwrap(),
        );
        assert!(
            *max > 8 * *min,
            "lesion sizes should vary widely: {min}..{max}"
        );
    }

    #[test]
    fn lesions_differ_from_surroundings() {
        // Mean |lesion - background| intensity gap over lesion images must be clearly above the noise.
        let mut gaps = Vec::new();
        for i in 0..20 {
            let p = phantom(5, i, 96);
            let (mut s1, mut n1, mut s0, mut n0) = (0f64, 0f64, 0f64, 0f64);
            for (&v, &m) in p.image.iter().zip(&p.mask) {
                if m == 1 {
                    s1 += v as f64;
                    n1 += 1.0;
                } else {
                    s0 += v as f64;
                    n0 += 1.0;
                }
            }
            if n1 > 0.0 {
                gaps.push((s1 / n1 - s0 / n0).abs());
            }
        }
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(mean > 15.0, "mean gap {mean}");
    }
}
