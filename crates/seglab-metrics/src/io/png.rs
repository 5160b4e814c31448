//! PNG: 8/16-bit gray, gray+alpha, RGB(A).
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::*;
use crate::mask::Mask;

enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

pub(super) fn read_png(path: &Path) -> Result<RawArray> {
    let file = File::open(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let img = image::load(BufReader::new(file), image::ImageFormat::Png)
        .map_err(|e| corrupt(path, "PNG", e))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    use image::DynamicImage as D;
    // Interleaved samples and (colour channels, samples per pixel incl. alpha).
    let (samples, colour, stride) = match img {
        D::ImageLuma8(i) => (Samples::U8(i.into_raw()), 1, 1),
        D::ImageLumaA8(i) => (Samples::U8(i.into_raw()), 1, 2),
        D::ImageRgb8(i) => (Samples::U8(i.into_raw()), 3, 3),
        D::ImageRgba8(i) => (Samples::U8(i.into_raw()), 3, 4),
        D::ImageLuma16(i) => (Samples::U16(i.into_raw()), 1, 1),
        D::ImageLumaA16(i) => (Samples::U16(i.into_raw()), 1, 2),
        D::ImageRgb16(i) => (Samples::U16(i.into_raw()), 3, 3),
        D::ImageRgba16(i) => (Samples::U16(i.into_raw()), 3, 4),
        other => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("{:?}", other.color()),
            })
        }
    };
    // The decoder has already allocated w * h pixels (the image crate refuses images over its 512 MiB default
    // allocation limit before decoding), so this cannot overflow; checked all the same, like every size from a file.
    let n = w
        .checked_mul(h)
        .ok_or_else(|| corrupt(path, "PNG", format!("size {w}x{h} overflows")))?;
    fn fold<T: Copy + Ord + Default>(samples: &[T], colour: usize, stride: usize) -> Vec<T> {
        if stride == 1 {
            return samples.to_vec();
        }
        samples
            .chunks_exact(stride)
            .map(|px| px[..colour].iter().copied().fold(T::default(), T::max))
            .collect()
    }
    fn planes<T: Copy + Into<f32>>(
        samples: &[T],
        colour: usize,
        stride: usize,
        n: usize,
    ) -> Vec<f32> {
        let mut planes = vec![0.0f32; colour * n];
        for (i, px) in samples.chunks_exact(stride).enumerate() {
            for c in 0..colour {
                planes[c * n + i] = px[c].into();
            }
        }
        planes
    }
    let (dtype, values, channel_values) = match &samples {
        Samples::U8(v) => (
            SourceDtype::U8,
            RawValues::U8(fold(v, colour, stride)),
            (colour > 1).then(|| planes(v, colour, stride, n)),
        ),
        Samples::U16(v) => (
            SourceDtype::U16,
            RawValues::F32(fold(v, colour, stride).into_iter().map(f32::from).collect()),
            (colour > 1).then(|| planes(v, colour, stride, n)),
        ),
    };
    Ok(RawArray {
        path: path.to_path_buf(),
        format: Format::Png,
        shape: vec![h, w],
        spacing: vec![1.0, 1.0],
        channels: colour,
        dtype,
        values,
        column_major: false,
        channel_values,
        nifti_header: None,
    })
}

/// Write a mask as an 8-bit gray PNG (0 / 255). Only 2D masks.
pub fn write_png_mask(path: &Path, mask: &Mask) -> Result<()> {
    if mask.ndim() != 2 {
        return Err(IoError::Write {
            path: path.to_path_buf(),
            detail: "PNG holds only 2D masks".into(),
        });
    }
    let (h, w) = (mask.shape()[0] as u32, mask.shape()[1] as u32);
    let bytes: Vec<u8> = mask
        .data()
        .iter()
        .map(|&v| if v { 255 } else { 0 })
        .collect();
    write_atomic(path, |out| {
        let enc = image::codecs::png::PngEncoder::new(out);
        image::ImageEncoder::write_image(enc, &bytes, w, h, image::ExtendedColorType::L8)
            .map_err(|e| e.to_string())
    })
}
