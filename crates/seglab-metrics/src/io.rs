//! Reading and writing masks, probability maps and images: 2D PNG, 2D/3D NIfTI (`.nii`, `.nii.gz`) and NPY.
//!
//! Every reader returns a [`RawArray`] (shape, spacing, values as f32 or f64, the source data type and, for NIfTI,
//! the header so a writer can reproduce the geometry). From it:
//! - [`RawArray::to_gt_mask`]: ground truth, `value > 0` is lesion (colour PNG: any channel > 0); non-binary
//!   gray data is an error unless a threshold is given (then `value >= threshold` is lesion, the same rule as
//!   predictions).
//! - [`RawArray::to_prob_map`]: predictions in [0, 1]; 8/16-bit integer images are scaled by their maximum
//!   (255 / 65535), except images whose values are all 0 or 1, which are 0/1 masks already.
//! - [`RawArray::to_intensities`]: raw intensities as f32 for training.
//!
//! Axis convention: array axis `i` is axis `i` of the NumPy array (C order) and of the NIfTI volume as nibabel
//! `get_fdata()` gives it (`dim[1]` is axis 0); `spacing[i]` belongs to axis `i` (NIfTI `pixdim[i + 1]`). PNG rows
//! are axis 0, columns axis 1. Data are stored row-major (last axis fastest) like [`Mask`].
//!
//! Writers write to a temporary file in the target folder and rename it, so a failed run never leaves a partial
//! output file.
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array, IxDyn};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};
use rayon::prelude::*;

use crate::mask::{binarize, Mask, ProbMap};

/// What went wrong reading or writing a file. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{}: file not found", .path.display())]
    NotFound { path: PathBuf },
    #[error("{}: is a directory, expected a file", .path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: unsupported file type (expected .png, .nii, .nii.gz or .npy)", .path.display())]
    UnsupportedFormat { path: PathBuf },
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt or truncated {format} file: {detail}", .path.display())]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("{}: unsupported data type {dtype}", .path.display())]
    UnsupportedDtype { path: PathBuf, dtype: String },
    #[error("{}: unsupported shape {shape:?} (expected a 2D or 3D array)", .path.display())]
    UnsupportedShape { path: PathBuf, shape: Vec<usize> },
    #[error("{}: prediction has {count} non-finite values (NaN or inf)", .path.display())]
    NonFinite { path: PathBuf, count: usize },
    #[error("{}: prediction values outside [0, 1] (min {min}, max {max}); expected probabilities or a 0/1 mask", .path.display())]
    OutOfRange { path: PathBuf, min: f64, max: f64 },
    #[error("{}: ground truth is not binary, values found: {values}; pass --gt-threshold to binarise it", .path.display())]
    NonBinary { path: PathBuf, values: String },
    #[error("{}: ground truth has {count} non-finite values (NaN or inf)", .path.display())]
    NonFiniteGt { path: PathBuf, count: usize },
    #[error("{}: cannot write: {detail}", .path.display())]
    Write { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, IoError>;

/// The file formats this module reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Nifti,
    Npy,
}

impl Format {
    /// The format from the file name; `None` when the extension is not one we read.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".png") {
            Some(Format::Png)
        } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            Some(Format::Nifti)
        } else if name.ends_with(".npy") {
            Some(Format::Npy)
        } else {
            None
        }
    }
}

/// File name without its image extension (`.nii.gz`, `.nii`, `.png`, `.npy`); `None` for other files.
pub fn image_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii", ".png", ".npy"] {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return Some(name[..name.len() - ext.len()].to_string());
        }
    }
    None
}

/// The data type of the source file's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceDtype {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl SourceDtype {
    pub fn is_float(self) -> bool {
        matches!(self, SourceDtype::F32 | SourceDtype::F64)
    }
    /// Largest value of an unsigned integer image type, used to scale PNG intensities to [0, 1].
    fn png_full_scale(self) -> Option<f64> {
        match self {
            SourceDtype::U8 => Some(255.0),
            SourceDtype::U16 => Some(65535.0),
            _ => None,
        }
    }
}

/// Values as read: u8 for bool and 8-bit unsigned data (masks, the common case: a quarter of f32's memory traffic),
/// f32 for other types it represents exactly (8/16-bit integers, f32), f64 otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValues {
    U8(Vec<u8>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl RawValues {
    pub fn len(&self) -> usize {
        match self {
            RawValues::U8(v) => v.len(),
            RawValues::F32(v) => v.len(),
            RawValues::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn map_bool(&self, f: impl Fn(f64) -> bool + Sync) -> Vec<bool> {
        match self {
            RawValues::U8(v) => {
                // One decision per byte value instead of one per voxel.
                let lut: [bool; 256] = std::array::from_fn(|b| f(b as f64));
                v.par_iter().map(|&x| lut[x as usize]).collect()
            }
            RawValues::F32(v) => v.par_iter().map(|&x| f(x as f64)).collect(),
            RawValues::F64(v) => v.par_iter().map(|&x| f(x)).collect(),
        }
    }

    /// [`RawValues::map_bool`] that turns 8-bit data into the mask in place.
    fn into_bool(self, f: impl Fn(f64) -> bool + Sync) -> Vec<bool> {
        let RawValues::U8(mut v) = self else {
            return self.map_bool(f);
        };
        let lut: [bool; 256] = std::array::from_fn(|b| f(b as f64));
        // Thresholds (the rules used here) make the table a step `x >= k`: a comparison vectorises, a table
        // lookup per byte does not.
        let k = lut.iter().position(|&t| t).unwrap_or(256);
        if lut[k..].iter().all(|&t| t) {
            match u8::try_from(k) {
                Ok(k) => v
                    .par_chunks_mut(1 << 16)
                    .for_each(|chunk| chunk.iter_mut().for_each(|x| *x = (*x >= k) as u8)),
                Err(_) => v.fill(0),
            }
        } else {
            v.par_chunks_mut(1 << 16)
                .for_each(|chunk| chunk.iter_mut().for_each(|x| *x = lut[*x as usize] as u8));
        }
        let mut v = std::mem::ManuallyDrop::new(v);
        // SAFETY: every byte is now 0 or 1, both valid `bool`s, and `bool` has the size and alignment of `u8`, so
        // the allocation is handed over with the layout it was made with.
        unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<bool>(), v.len(), v.capacity()) }
    }
    fn map_f32(&self, f: impl Fn(f64) -> f32) -> Vec<f32> {
        match self {
            RawValues::U8(v) => {
                let lut: [f32; 256] = std::array::from_fn(|b| f(b as f64));
                v.iter().map(|&x| lut[x as usize]).collect()
            }
            RawValues::F32(v) => v.iter().map(|&x| f(x as f64)).collect(),
            RawValues::F64(v) => v.iter().map(|&x| f(x)).collect(),
        }
    }
    fn for_each(&self, mut f: impl FnMut(f64)) {
        match self {
            RawValues::U8(v) => v.iter().for_each(|&x| f(x as f64)),
            RawValues::F32(v) => v.iter().for_each(|&x| f(x as f64)),
            RawValues::F64(v) => v.iter().for_each(|&x| f(x)),
        }
    }
}

/// A ground-truth binarisation rule.
#[derive(Clone, Copy, Debug)]
enum Cut {
    AtLeast(f64),
    Above(f64),
}

impl Cut {
    fn holds(self, x: f64) -> bool {
        match self {
            Cut::AtLeast(t) => x >= t,
            Cut::Above(t) => x > t,
        }
    }
}

/// An array as read from a file, before it becomes a mask, a probability map or an image.
#[derive(Clone, Debug)]
pub struct RawArray {
    pub path: PathBuf,
    pub format: Format,
    /// Spatial shape (2 or 3 axes).
    pub shape: Vec<usize>,
    /// mm per axis: NIfTI pixdim, 1.0 for PNG and NPY.
    pub spacing: Vec<f64>,
    /// Colour channels folded into `values` (1 for gray; 3 or 4 for RGB/RGBA PNG, see [`read`]).
    pub channels: usize,
    pub dtype: SourceDtype,
    /// Values, one per voxel (channels folded: maximum over colour channels, alpha ignored), row-major unless
    /// `column_major`.
    pub values: RawValues,
    /// `values` are in the file's column-major order (first axis fastest: NIfTI, Fortran-order NPY), as
    /// [`read_native`] leaves them; [`read`] always returns row-major arrays.
    pub column_major: bool,
    /// Channel-first values (`[c][row][col]`) of a colour PNG, for training on RGB images; `None` for gray.
    pub channel_values: Option<Vec<f32>>,
    /// The NIfTI header, kept so a writer can reproduce the geometry (affine, pixdim, units).
    pub nifti_header: Option<Box<NiftiHeader>>,
}

/// Read a PNG, NIfTI or NPY file (format from its extension), values in row-major (C) order.
///
/// Colour PNGs are folded to one value per pixel, the maximum over the colour channels (alpha ignored), so that a
/// mask is "any channel > 0"; the channels themselves are kept in [`RawArray::channel_values`].
pub fn read(path: &Path) -> Result<RawArray> {
    Ok(read_native(path)?.into_row_major())
}

/// [`read`] without reordering: column-major files (NIfTI, Fortran-order NPY) keep their storage order, and the
/// masks made from them run over the reversed axes ([`RawArray::storage_shape`]). Overlap, distance and lesion
/// metrics do not depend on the order of the axes (spacing is reversed with them), so `evaluate` reads this way
/// and skips a full pass over each volume (about 15% of evaluating a 512x512x256 pair).
pub fn read_native(path: &Path) -> Result<RawArray> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IoError::NotFound {
            path: path.to_path_buf(),
        },
        _ => IoError::Read {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if meta.is_dir() {
        return Err(IoError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    match Format::from_path(path) {
        Some(Format::Png) => read_png(path),
        Some(Format::Nifti) => read_nifti(path),
        Some(Format::Npy) => read_npy(path),
        None => Err(IoError::UnsupportedFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Ground truth mask: `value > 0`, or `value >= gt_threshold` when given. See [`RawArray::to_gt_mask`].
pub fn read_gt_mask(path: &Path, gt_threshold: Option<f64>) -> Result<Mask> {
    read(path)?.to_gt_mask(gt_threshold)
}

/// Prediction as probabilities in [0, 1]. See [`RawArray::to_prob_map`].
pub fn read_prob_map(path: &Path) -> Result<ProbMap> {
    read(path)?.to_prob_map()
}

/// Image intensities (as stored, not rescaled) for training: `(spatial shape, channels, channel-first data,
/// spacing)`; gray images have one channel.
pub fn read_intensities(path: &Path) -> Result<Intensities> {
    Ok(read(path)?.to_intensities())
}

/// An image's intensities, channel-first (`[c][spatial...]`), as stored in the file (not rescaled).
#[derive(Clone, Debug, PartialEq)]
pub struct Intensities {
    pub shape: Vec<usize>,
    pub spacing: Vec<f64>,
    pub channels: usize,
    pub dtype: SourceDtype,
    pub data: Vec<f32>,
}

impl RawArray {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The same array with row-major values (a no-op unless `column_major`).
    pub fn into_row_major(mut self) -> RawArray {
        if self.column_major {
            let mut full = self.shape.clone();
            full.resize(3, 1);
            self.values = to_c_order(&full, self.values);
            self.column_major = false;
        }
        self
    }

    /// The shape of `values` as stored: `shape`, reversed when column-major.
    pub fn storage_shape(&self) -> Vec<usize> {
        self.storage_order(&self.shape)
    }

    /// `spacing` in the order of [`RawArray::storage_shape`].
    pub fn storage_spacing(&self) -> Vec<f64> {
        self.storage_order(&self.spacing)
    }

    fn storage_order<T: Clone>(&self, v: &[T]) -> Vec<T> {
        let mut v = v.to_vec();
        if self.column_major {
            v.reverse();
        }
        v
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Ground truth: `value > 0` is lesion. Data with more than two distinct values, or two values neither of
    /// which is 0, are not a mask: an error listing the values found, unless `threshold` is given, in which case
    /// `value >= threshold` is lesion (the same rule as predictions).
    pub fn to_gt_mask(&self, threshold: Option<f64>) -> Result<Mask> {
        let rule = self.gt_rule(threshold)?;
        let data = self.values.map_bool(|x| rule.holds(x));
        Ok(Mask::new(
            self.storage_shape(),
            self.storage_spacing(),
            data,
        ))
    }

    /// [`RawArray::to_gt_mask`] reusing the memory of 8-bit data for the mask (a 512x512x256 volume is 67 MB that
    /// need not be allocated and faulted in again).
    pub fn into_gt_mask(self, threshold: Option<f64>) -> Result<Mask> {
        let rule = self.gt_rule(threshold)?;
        let (shape, spacing) = (self.storage_shape(), self.storage_spacing());
        Ok(Mask::new(
            shape,
            spacing,
            self.values.into_bool(|x| rule.holds(x)),
        ))
    }

    fn gt_rule(&self, threshold: Option<f64>) -> Result<Cut> {
        let mut non_finite = 0usize;
        if !matches!(self.values, RawValues::U8(_)) {
            self.values
                .for_each(|x| non_finite += (!x.is_finite()) as usize);
        }
        if non_finite > 0 {
            return Err(IoError::NonFiniteGt {
                path: self.path.clone(),
                count: non_finite,
            });
        }
        Ok(match threshold {
            Some(t) => Cut::AtLeast(t),
            // Colour masks label classes by colour: any channel > 0 is lesion, whatever the colours.
            None if self.channels > 1 => Cut::Above(0.0),
            None => {
                let found = distinct_values(&self.values, 8);
                let binary = found.len() <= 1 || (found.len() == 2 && found[0] == 0.0);
                if !binary {
                    let mut values: Vec<String> =
                        found.iter().take(7).map(|v| format_value(*v)).collect();
                    if found.len() > 7 {
                        values.push("...".into());
                    }
                    return Err(IoError::NonBinary {
                        path: self.path.clone(),
                        values: values.join(", "),
                    });
                }
                Cut::Above(0.0)
            }
        })
    }

    /// Prediction as probabilities in [0, 1]:
    /// - floats must be finite and in [0, 1] (else an error: logits or unscaled data are not guessed at);
    /// - PNG 8/16-bit values are divided by 255 / 65535, unless every value is 0 or 1 (a 0/1 mask);
    /// - other integer and bool data (NPY, NIfTI) are masks: `value > 0` is 1.
    pub fn to_prob_map(&self) -> Result<ProbMap> {
        let data = if self.dtype.is_float() {
            let (mut min, mut max, mut non_finite) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
            self.values.for_each(|x| {
                if x.is_finite() {
                    min = min.min(x);
                    max = max.max(x);
                } else {
                    non_finite += 1;
                }
            });
            if non_finite > 0 {
                return Err(IoError::NonFinite {
                    path: self.path.clone(),
                    count: non_finite,
                });
            }
            if !self.is_empty() && (min < 0.0 || max > 1.0) {
                return Err(IoError::OutOfRange {
                    path: self.path.clone(),
                    min,
                    max,
                });
            }
            self.values.map_f32(|x| x as f32)
        } else {
            self.values.map_f32(self.integer_prob())
        };
        Ok(ProbMap::new(
            self.storage_shape(),
            self.storage_spacing(),
            data,
        ))
    }

    /// The prediction binarised at `threshold`: the same values as `to_prob_map()?.threshold(threshold)`, but 8-bit
    /// data never becomes an f32 map (4 bytes per voxel; 270 MB for a 512x512x256 volume): one decision per byte
    /// value.
    pub fn to_pred_mask(&self, threshold: f32) -> Result<Mask> {
        if !matches!(self.values, RawValues::U8(_)) {
            return Ok(self.to_prob_map()?.threshold(threshold));
        }
        let prob = self.integer_prob();
        let data = self.values.map_bool(|x| binarize(prob(x), threshold));
        Ok(Mask::new(
            self.storage_shape(),
            self.storage_spacing(),
            data,
        ))
    }

    /// [`RawArray::to_pred_mask`] reusing the memory of 8-bit data for the mask.
    pub fn into_pred_mask(self, threshold: f32) -> Result<Mask> {
        if !matches!(self.values, RawValues::U8(_)) {
            return Ok(self.to_prob_map()?.threshold(threshold));
        }
        let prob = self.integer_prob();
        let (shape, spacing) = (self.storage_shape(), self.storage_spacing());
        Ok(Mask::new(
            shape,
            spacing,
            self.values.into_bool(|x| binarize(prob(x), threshold)),
        ))
    }

    /// Probability of an integer (or bool) value: PNG 8/16-bit values are divided by 255 / 65535 unless every value
    /// is 0 or 1 (a 0/1 mask); other integer data are masks, `value > 0` is 1.
    fn integer_prob(&self) -> impl Fn(f64) -> f32 {
        let scale = match (self.format, self.dtype.png_full_scale()) {
            (Format::Png, Some(full)) => {
                let max = match &self.values {
                    RawValues::U8(v) => v.iter().copied().max().unwrap_or(0) as f64,
                    other => {
                        let mut max = 0.0f64;
                        other.for_each(|x| max = max.max(x));
                        max
                    }
                };
                Some(if max <= 1.0 { 1.0 } else { full })
            }
            _ => None,
        };
        move |x: f64| match scale {
            Some(s) => (x / s) as f32,
            None if x > 0.0 => 1.0,
            None => 0.0,
        }
    }

    pub fn to_intensities(&self) -> Intensities {
        let data = match &self.channel_values {
            Some(c) => c.clone(),
            None => self.values.map_f32(|x| x as f32),
        };
        Intensities {
            shape: self.storage_shape(),
            spacing: self.storage_spacing(),
            channels: self.channels,
            dtype: self.dtype,
            data,
        }
    }
}

/// Sorted distinct values, stopping after `limit + 1` (enough to say "more than `limit`").
fn distinct_values(values: &RawValues, limit: usize) -> Vec<f64> {
    if let RawValues::U8(v) = values {
        // Masks hold at most two values: one vectorised pass finds the smallest, the smallest non-zero (as
        // `x - 1` wrapping, so 0 becomes 255) and the largest; only data with more values need the full table.
        let (min, min_nz, max) = v
            .par_chunks(1 << 16)
            .map(|c| {
                c.iter().fold((u8::MAX, u8::MAX, 0u8), |(lo, nz, hi), &x| {
                    (lo.min(x), nz.min(x.wrapping_sub(1)), hi.max(x))
                })
            })
            .reduce(
                || (u8::MAX, u8::MAX, 0u8),
                |a, b| (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2)),
            );
        if v.is_empty() {
            return Vec::new();
        }
        let min_nz = min_nz.wrapping_add(1);
        if max == 0 || min_nz == max {
            let mut found = Vec::with_capacity(2);
            if min == 0 {
                found.push(0.0);
            }
            if max > 0 {
                found.push(max as f64);
            }
            return found;
        }
        let mut seen = [false; 256];
        v.iter().for_each(|&x| seen[x as usize] = true);
        return (0..256)
            .filter(|&b| seen[b])
            .map(|b| b as f64)
            .take(limit + 1)
            .collect();
    }
    let mut found: Vec<f64> = Vec::new();
    let mut add = |x: f64| {
        if found.len() <= limit && !found.contains(&x) {
            found.push(x);
        }
    };
    values.for_each(&mut add);
    found.sort_by(|a, b| a.total_cmp(b));
    found
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn corrupt(path: &Path, format: &'static str, detail: impl ToString) -> IoError {
    IoError::Corrupt {
        path: path.to_path_buf(),
        format,
        detail: detail.to_string(),
    }
}

fn check_rank(path: &Path, shape: Vec<usize>) -> Result<Vec<usize>> {
    if shape.len() == 2 || shape.len() == 3 {
        Ok(shape)
    } else {
        Err(IoError::UnsupportedShape {
            path: path.to_path_buf(),
            shape,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// PNG

enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

fn read_png(path: &Path) -> Result<RawArray> {
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
    let n = w * h;
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

// ---------------------------------------------------------------------------------------------------------------
// NIfTI

fn read_nifti(path: &Path) -> Result<RawArray> {
    // The nifti crate panics on some inconsistent headers ("Inconsistent raw data size"): a corrupt file must be
    // an error naming it, not a crash.
    let parsed = std::panic::catch_unwind(|| -> std::result::Result<_, String> {
        let obj = ReaderOptions::new()
            .read_file(path)
            .map_err(|e| e.to_string())?;
        let header = obj.header().clone();
        let datatype = header.data_type().map_err(|e| e.to_string())?;
        let volume = obj.into_volume();
        Ok((header, datatype, volume))
    });
    let (header, datatype, volume) = match parsed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(corrupt(path, "NIfTI", e)),
        Err(_) => return Err(corrupt(path, "NIfTI", "inconsistent header and data")),
    };
    let ndim_declared = header.dim[0] as usize;
    if !(1..=7).contains(&ndim_declared) {
        return Err(corrupt(
            path,
            "NIfTI",
            format!("invalid dim[0] = {}", header.dim[0]),
        ));
    }
    let mut shape: Vec<usize> = header.dim[1..=ndim_declared]
        .iter()
        .map(|&d| d as usize)
        .collect();
    // Trailing singleton axes (time = 1) carry no data; nibabel keeps them but they are not spatial.
    while shape.len() > 3 && shape.last() == Some(&1) {
        shape.pop();
    }
    let shape = check_rank(path, shape)?;
    let spacing: Vec<f64> = (0..shape.len())
        .map(|i| {
            let p = (header.pixdim[i + 1] as f64).abs();
            // pixdim 0 means "unknown" in practice; 1 mm is what nibabel's zooms report for it in masks we met.
            if p > 0.0 && p.is_finite() {
                p
            } else {
                1.0
            }
        })
        .collect();
    let (dtype, wide) = match datatype {
        NiftiType::Uint8 => (SourceDtype::U8, false),
        NiftiType::Int8 => (SourceDtype::I8, false),
        NiftiType::Uint16 => (SourceDtype::U16, false),
        NiftiType::Int16 => (SourceDtype::I16, false),
        NiftiType::Uint32 => (SourceDtype::U32, true),
        NiftiType::Int32 => (SourceDtype::I32, true),
        NiftiType::Uint64 => (SourceDtype::U64, true),
        NiftiType::Int64 => (SourceDtype::I64, true),
        NiftiType::Float32 => (SourceDtype::F32, false),
        NiftiType::Float64 => (SourceDtype::F64, true),
        other => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("NIfTI {other:?}"),
            })
        }
    };
    // A slope other than 0/1 turns integers into floats: report them as such so predictions are range-checked.
    let scaled = header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
    let dtype = if scaled && !dtype.is_float() {
        SourceDtype::F32
    } else {
        dtype
    };
    let n: usize = shape.iter().product();
    // Values stay in the file's order (first axis fastest); `read` reorders them when asked.
    let conv = std::panic::catch_unwind(|| -> std::result::Result<RawValues, String> {
        if dtype == SourceDtype::U8 && !scaled {
            // Bytes as stored; endianness does not apply to one byte.
            let mut raw = volume.into_raw_data();
            if raw.len() < n {
                return Err("data size does not match the header".into());
            }
            raw.truncate(n);
            return Ok(RawValues::U8(raw));
        }
        // into_ndarray gives a Fortran-ordered (column-major) array: its memory order is the file's order.
        if wide {
            let a = volume.into_ndarray::<f64>().map_err(|e| e.to_string())?;
            Ok(RawValues::F64(
                a.as_slice_memory_order().ok_or("not contiguous")?.to_vec(),
            ))
        } else {
            let a = volume.into_ndarray::<f32>().map_err(|e| e.to_string())?;
            Ok(RawValues::F32(
                a.as_slice_memory_order().ok_or("not contiguous")?.to_vec(),
            ))
        }
    });
    let values = match conv {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(corrupt(path, "NIfTI", e)),
        Err(_) => {
            return Err(corrupt(
                path,
                "NIfTI",
                "data size does not match the header",
            ))
        }
    };
    if values.len() != n {
        return Err(corrupt(
            path,
            "NIfTI",
            "data size does not match the header",
        ));
    }
    Ok(RawArray {
        path: path.to_path_buf(),
        format: Format::Nifti,
        shape,
        spacing,
        channels: 1,
        dtype,
        values,
        column_major: true,
        channel_values: None,
        nifti_header: Some(Box::new(header)),
    })
}

/// Values a NIfTI writer can store.
pub enum NiftiData<'a> {
    /// Written as uint8 0/1.
    Mask(&'a [bool]),
    /// Written as float32.
    F32(&'a [f32]),
}

/// Write a 2D or 3D volume as NIfTI (`.nii` or `.nii.gz` by the file name). With `reference` the geometry
/// (pixdim, qform/sform, units, description) is copied from it; otherwise an identity affine with `spacing`.
pub fn write_nifti(
    path: &Path,
    shape: &[usize],
    spacing: &[f64],
    data: NiftiData<'_>,
    reference: Option<&NiftiHeader>,
) -> Result<()> {
    let werr = |d: String| IoError::Write {
        path: path.to_path_buf(),
        detail: d,
    };
    if shape.len() != spacing.len() || !(2..=3).contains(&shape.len()) {
        return Err(werr(format!(
            "shape {shape:?} / spacing {spacing:?} is not a 2D or 3D geometry"
        )));
    }
    let mut header = match reference {
        Some(h) => h.clone(),
        None => NiftiHeader {
            sform_code: 0,
            qform_code: 0,
            ..Default::default()
        },
    };
    header.pixdim = [1.0; 8];
    if let Some(r) = reference {
        header.pixdim[0] = r.pixdim[0];
    }
    for (i, &s) in spacing.iter().enumerate() {
        header.pixdim[i + 1] = s as f32;
    }
    header.scl_slope = 1.0;
    header.scl_inter = 0.0;
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let write = |tmp: &Path| -> std::result::Result<(), String> {
        let opts = nifti::writer::WriterOptions::new(tmp)
            .reference_header(&header)
            .compress(gz);
        match data {
            NiftiData::Mask(m) => {
                let v: Vec<u8> = m.iter().map(|&b| b as u8).collect();
                let a = Array::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?;
                opts.write_nifti(&a).map_err(|e| e.to_string())
            }
            NiftiData::F32(d) => {
                let a =
                    Array::from_shape_vec(IxDyn(shape), d.to_vec()).map_err(|e| e.to_string())?;
                opts.write_nifti(&a).map_err(|e| e.to_string())
            }
        }
    };
    write_atomic_path(path, write)
}

// ---------------------------------------------------------------------------------------------------------------
// NPY

fn read_npy(path: &Path) -> Result<RawArray> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
    let bad = |d: &str| corrupt(path, "NPY", d);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing NPY magic"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("header truncated"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("unknown NPY version {v}"))),
    };
    if bytes.len() < start + header_len {
        return Err(bad("header truncated"));
    }
    let header = std::str::from_utf8(&bytes[start..start + header_len])
        .map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.split(['\'', '"']).next())
        .ok_or_else(|| bad("header has no 'descr'"))?
        .to_string();
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    let fortran = fortran.starts_with("True");
    let shape_text = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("malformed 'shape'"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("malformed 'shape'")))
        .collect::<Result<_>>()?;
    let (order, kind, size) = parse_descr(&descr).ok_or_else(|| IoError::UnsupportedDtype {
        path: path.to_path_buf(),
        dtype: format!("NPY '{descr}'"),
    })?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    if body.len() < n * size {
        return Err(bad(&format!(
            "data truncated: {} bytes, expected {}",
            body.len(),
            n * size
        )));
    }
    let body = &body[..n * size];
    let shape = check_rank(path, shape)?;
    let little = order != '>';
    macro_rules! conv {
        ($t:ty, $out:ty) => {{
            body.chunks_exact(size)
                .map(|c| {
                    let arr: [u8; std::mem::size_of::<$t>()] = c.try_into().unwrap();
                    (if little {
                        <$t>::from_le_bytes(arr)
                    } else {
                        <$t>::from_be_bytes(arr)
                    }) as $out
                })
                .collect::<Vec<$out>>()
        }};
    }
    let (dtype, values) = match (kind, size) {
        ('b', 1) => (
            SourceDtype::Bool,
            RawValues::U8(body.iter().map(|&b| (b != 0) as u8).collect()),
        ),
        ('u', 1) => (SourceDtype::U8, RawValues::U8(body.to_vec())),
        ('i', 1) => (
            SourceDtype::I8,
            RawValues::F32(body.iter().map(|&b| b as i8 as f32).collect()),
        ),
        ('u', 2) => (SourceDtype::U16, RawValues::F32(conv!(u16, f32))),
        ('i', 2) => (SourceDtype::I16, RawValues::F32(conv!(i16, f32))),
        ('u', 4) => (SourceDtype::U32, RawValues::F64(conv!(u32, f64))),
        ('i', 4) => (SourceDtype::I32, RawValues::F64(conv!(i32, f64))),
        ('u', 8) => (SourceDtype::U64, RawValues::F64(conv!(u64, f64))),
        ('i', 8) => (SourceDtype::I64, RawValues::F64(conv!(i64, f64))),
        ('f', 4) => (SourceDtype::F32, RawValues::F32(conv!(f32, f32))),
        ('f', 8) => (SourceDtype::F64, RawValues::F64(conv!(f64, f64))),
        _ => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("NPY '{descr}'"),
            })
        }
    };
    let spacing = vec![1.0; shape.len()];
    Ok(RawArray {
        path: path.to_path_buf(),
        format: Format::Npy,
        shape,
        spacing,
        channels: 1,
        dtype,
        values,
        column_major: fortran,
        channel_values: None,
        nifti_header: None,
    })
}

fn to_c_order(shape: &[usize], values: RawValues) -> RawValues {
    match values {
        RawValues::U8(v) => RawValues::U8(fortran_to_c(shape, &v)),
        RawValues::F32(v) => RawValues::F32(fortran_to_c(shape, &v)),
        RawValues::F64(v) => RawValues::F64(fortran_to_c(shape, &v)),
    }
}

/// Reorders Fortran-order data (first axis fastest, as NIfTI stores it) into C order. An explicit loop: iterating
/// an `IxDyn` ndarray view in logical order costs ~75% of reading a volume.
fn fortran_to_c<T: Copy + Default>(shape: &[usize], f: &[T]) -> Vec<T> {
    // Axes beyond the third are singletons (checked by the readers); a 2D array is [n0, n1, 1].
    let n0 = shape.first().copied().unwrap_or(1);
    let n1 = shape.get(1).copied().unwrap_or(1);
    let n2: usize = shape.iter().skip(2).product();
    let mut c = vec![T::default(); f.len()];
    assert_eq!(n0 * n1 * n2, f.len());
    // Tiled over (axis 0, axis 2) so that both the strided reads and the writes stay in cache; a tile row is one
    // 64-byte cache line of the source.
    let tile = (64 / std::mem::size_of::<T>()).clamp(8, 64);
    let plane = n0 * n1;
    for j in 0..n1 {
        for i0 in (0..n0).step_by(tile) {
            for k0 in (0..n2).step_by(tile) {
                for i in i0..(i0 + tile).min(n0) {
                    let src = i + n0 * j;
                    let dst = (i * n1 + j) * n2;
                    for k in k0..(k0 + tile).min(n2) {
                        c[dst + k] = f[src + plane * k];
                    }
                }
            }
        }
    }
    c
}

/// The text after `'key':` in a NumPy header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// `(byte order, kind, item size)` of a NumPy type string such as `<f4` or `|b1`.
fn parse_descr(descr: &str) -> Option<(char, char, usize)> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    if !matches!(order, '<' | '>' | '|' | '=') {
        return None;
    }
    let kind = chars.next()?;
    let size: usize = chars.as_str().parse().ok()?;
    Some((order, kind, size))
}

/// Values an NPY writer can store.
pub enum NpyData<'a> {
    /// `|b1`.
    Bool(&'a [bool]),
    /// `|u1`.
    U8(&'a [u8]),
    /// `<f4`.
    F32(&'a [f32]),
}

/// Write a C-order NPY (version 1.0) file.
pub fn write_npy(path: &Path, shape: &[usize], data: NpyData<'_>) -> Result<()> {
    let (descr, n) = match &data {
        NpyData::Bool(d) => ("|b1", d.len()),
        NpyData::U8(d) => ("|u1", d.len()),
        NpyData::F32(d) => ("<f4", d.len()),
    };
    if n != shape.iter().product::<usize>() {
        return Err(IoError::Write {
            path: path.to_path_buf(),
            detail: format!("{n} values do not fill shape {shape:?}"),
        });
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data start is 64-byte aligned, ending with a newline, as NumPy does.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    write_atomic(path, |out| {
        let io = |e: std::io::Error| e.to_string();
        out.write_all(b"\x93NUMPY\x01\x00").map_err(io)?;
        out.write_all(&(header.len() as u16).to_le_bytes())
            .map_err(io)?;
        out.write_all(header.as_bytes()).map_err(io)?;
        match data {
            NpyData::Bool(d) => out
                .write_all(&d.iter().map(|&b| b as u8).collect::<Vec<_>>())
                .map_err(io),
            NpyData::U8(d) => out.write_all(d).map_err(io),
            NpyData::F32(d) => {
                for v in d {
                    out.write_all(&v.to_le_bytes()).map_err(io)?;
                }
                Ok(())
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Atomic writes

/// A unique temporary path beside `path`. It keeps a NIfTI suffix (the NIfTI writer picks compression from it and
/// rewrites everything after the first dot of the stem, so the name has no other dots).
fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let suffix = if lower.ends_with(".nii.gz") {
        ".nii.gz"
    } else if lower.ends_with(".nii") {
        ".nii"
    } else {
        ".tmp"
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(
        ".seglab-partial-{}-{nanos}-{n}{suffix}",
        std::process::id()
    ))
}

/// Run `write` on a temporary path beside `path`, then rename it over `path`; the temporary file is removed on
/// failure, so `path` is either the complete new file or untouched.
pub fn write_atomic_path(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let tmp = temp_path_for(path);
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(detail) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::Write {
            path: path.to_path_buf(),
            detail,
        });
    }
    Ok(())
}

/// Write through a buffered writer to a temporary file, then rename it over `path`.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::result::Result<(), String>,
) -> Result<()> {
    write_atomic_path(path, |tmp| {
        let file = File::create(tmp).map_err(|e| e.to_string())?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())
    })
}

/// Write bytes atomically (JSON, CSV reports).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |out| out.write_all(bytes).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_u8_values_match_a_set() {
        let sets: [&[u8]; 9] = [
            &[],
            &[0],
            &[7],
            &[0, 1],
            &[0, 255],
            &[3, 9],
            &[0, 1, 2],
            &[1, 2, 3, 200],
            &[0, 4, 5],
        ];
        let mut seed = 1u64;
        for set in sets {
            for len in [0usize, 1, 5, 70_000] {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        set.get((seed >> 33) as usize % set.len().max(1))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect();
                let want: std::collections::BTreeSet<u8> = v.iter().copied().collect();
                let want: Vec<f64> = want.into_iter().map(f64::from).take(9).collect();
                assert_eq!(
                    distinct_values(&RawValues::U8(v), 8),
                    want,
                    "{set:?} x {len}"
                );
            }
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn npy_roundtrip_all_writers() {
        let dir = tmp();
        let shape = [2usize, 3, 4];
        let m: Vec<bool> = (0..24).map(|i| i % 5 == 0).collect();
        let p = dir.path().join("m.npy");
        write_npy(&p, &shape, NpyData::Bool(&m)).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.dtype, SourceDtype::Bool);
        assert_eq!(r.shape, shape);
        assert_eq!(r.to_gt_mask(None).unwrap().data(), &m[..]);

        let f: Vec<f32> = (0..24).map(|i| i as f32 / 23.0).collect();
        let p = dir.path().join("f.npy");
        write_npy(&p, &shape, NpyData::F32(&f)).unwrap();
        let pm = read_prob_map(&p).unwrap();
        assert_eq!(pm.data(), &f[..]);
        // Non-binary ground truth lists what it found.
        let err = read_gt_mask(&p, None).unwrap_err().to_string();
        assert!(
            err.contains("f.npy") && err.contains("not binary") && err.contains("0, 0.04"),
            "{err}"
        );
        assert_eq!(read_gt_mask(&p, Some(0.5)).unwrap().count(), 12);
    }

    #[test]
    fn png_gray_and_rgb() {
        let dir = tmp();
        let m = Mask::from_vec(vec![2, 3], vec![true, false, false, false, true, true]);
        let p = dir.path().join("x.png");
        write_png_mask(&p, &m).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(
            (r.dtype, r.channels, r.shape.clone()),
            (SourceDtype::U8, 1, vec![2, 3])
        );
        assert_eq!(r.to_gt_mask(None).unwrap().data(), m.data());
        assert_eq!(
            r.to_prob_map().unwrap().data(),
            &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        );

        // RGB mask: only the blue channel is set on pixel 1; "any channel > 0" is lesion.
        let rgb = image::RgbImage::from_raw(2, 1, vec![0, 0, 0, 0, 0, 9]).unwrap();
        let p = dir.path().join("rgb.png");
        rgb.save(&p).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.channels, 3);
        assert_eq!(r.to_gt_mask(Some(1.0)).unwrap().data(), &[false, true]);
        assert_eq!(r.to_intensities().data, vec![0.0, 0.0, 0.0, 0.0, 0.0, 9.0]);
        // Several colours are still one lesion class for a colour mask.
        let rgb = image::RgbImage::from_raw(3, 1, vec![0, 0, 0, 255, 0, 0, 0, 128, 0]).unwrap();
        rgb.save(&p).unwrap();
        assert_eq!(read_gt_mask(&p, None).unwrap().data(), &[false, true, true]);

        // 16-bit probabilities are scaled by 65535.
        let g16 =
            image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(2, 1, vec![65535, 32768])
                .unwrap();
        let p = dir.path().join("g16.png");
        g16.save(&p).unwrap();
        let pm = read_prob_map(&p).unwrap();
        assert_eq!(pm.data()[0], 1.0);
        assert!((pm.data()[1] - 0.500_007_6).abs() < 1e-6);
    }

    #[test]
    fn pred_mask_equals_thresholded_prob_map() {
        let dir = tmp();
        // 8-bit gray PNG probabilities, a 0/1 PNG mask, a u8 NPY mask and a f32 NPY map: every reader path.
        let img: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
        let p = dir.path().join("p.png");
        image::GrayImage::from_raw(8, 8, img.clone())
            .unwrap()
            .save(&p)
            .unwrap();
        let m01 = dir.path().join("m.png");
        let bits: Vec<u8> = img.iter().map(|&b| (b > 100) as u8).collect();
        image::GrayImage::from_raw(8, 8, bits.clone())
            .unwrap()
            .save(&m01)
            .unwrap();
        let npy = dir.path().join("m.npy");
        write_npy(&npy, &[8, 8], NpyData::U8(&bits)).unwrap();
        let f: Vec<f32> = img.iter().map(|&b| b as f32 / 255.0).collect();
        let fnpy = dir.path().join("f.npy");
        write_npy(&fnpy, &[8, 8], NpyData::F32(&f)).unwrap();
        for path in [&p, &m01, &npy, &fnpy] {
            let r = read(path).unwrap();
            for t in [0.0f32, 0.3, 0.5, 1.0, 1.5] {
                let expected = r.to_prob_map().unwrap().threshold(t);
                assert_eq!(
                    r.to_pred_mask(t).unwrap(),
                    expected,
                    "{} at {t}",
                    path.display()
                );
                assert_eq!(
                    r.clone().into_pred_mask(t).unwrap(),
                    expected,
                    "{} at {t} (in place)",
                    path.display()
                );
            }
            for t in [None, Some(0.5)] {
                match r.to_gt_mask(t) {
                    Ok(m) => assert_eq!(r.clone().into_gt_mask(t).unwrap(), m),
                    Err(e) => assert_eq!(
                        r.clone().into_gt_mask(t).unwrap_err().to_string(),
                        e.to_string()
                    ),
                }
            }
        }
    }

    #[test]
    fn nifti_roundtrip_keeps_geometry() {
        let dir = tmp();
        let shape = [4usize, 3, 2];
        let m: Vec<bool> = (0..24).map(|i| i % 3 == 0).collect();
        let p = dir.path().join("m.nii.gz");
        write_nifti(&p, &shape, &[0.8, 0.9, 3.0], NiftiData::Mask(&m), None).unwrap();
        let r = read(&p).unwrap();
        assert_eq!(r.shape, shape);
        assert!((r.spacing[2] - 3.0).abs() < 1e-6 && (r.spacing[0] - 0.8).abs() < 1e-6);
        assert_eq!(r.to_gt_mask(None).unwrap().data(), &m[..]);
        // Rewriting with the header reproduces pixdim/affine fields.
        let mut h = r.nifti_header.clone().unwrap();
        h.srow_x = [0.8, 0.0, 0.0, -10.0];
        h.sform_code = 1;
        let p2 = dir.path().join("m2.nii");
        let f: Vec<f32> = m.iter().map(|&b| b as u8 as f32 * 0.25).collect();
        write_nifti(&p2, &shape, &r.spacing, NiftiData::F32(&f), Some(&h)).unwrap();
        let r2 = read(&p2).unwrap();
        let h2 = r2.nifti_header.clone().unwrap();
        assert_eq!((h2.srow_x, h2.sform_code), ([0.8, 0.0, 0.0, -10.0], 1));
        assert_eq!(r2.to_prob_map().unwrap().data(), &f[..]);
    }

    #[test]
    fn bad_inputs_name_the_file() {
        let dir = tmp();
        // Truncated NPY.
        let p = dir.path().join("t.npy");
        write_npy(&p, &[4, 4], NpyData::F32(&[0.5; 16])).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
        // Corrupt PNG / NIfTI.
        for name in ["c.png", "c.nii.gz", "c.nii"] {
            let p = dir.path().join(name);
            std::fs::write(&p, b"not an image at all, just some bytes").unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("corrupt"), "{e}");
        }
        // Directory passed as a file.
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        // NaN in a prediction.
        let p = dir.path().join("nan.npy");
        write_npy(
            &p,
            &[2, 2],
            NpyData::F32(&[0.0, f32::NAN, 1.0, f32::INFINITY]),
        )
        .unwrap();
        let e = read_prob_map(&p).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("2 non-finite"), "{e}");
        // Unsupported NPY dtype (complex).
        let p = dir.path().join("cplx.npy");
        let mut bytes = std::fs::read(dir.path().join("nan.npy")).unwrap();
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 1] = b'c';
        std::fs::write(&p, bytes).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("cplx.npy") && e.contains("unsupported data type"),
            "{e}"
        );
    }

    #[test]
    fn fortran_to_c_matches_ndarray() {
        use ndarray::ShapeBuilder;
        for shape in [vec![5usize, 7], vec![3, 40, 37], vec![33, 2, 65]] {
            let n: usize = shape.iter().product();
            let f: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let a = Array::from_shape_vec(IxDyn(&shape).f(), f.clone()).unwrap();
            let expected: Vec<f32> = a.iter().copied().collect();
            assert_eq!(fortran_to_c(&shape, &f), expected, "{shape:?}");
            // Bytes use a wider tile (64): shapes straddling it.
            let shape_u8 = [
                shape[0] * 2 + 1,
                shape[1],
                shape.get(2).map_or(70, |&k| k + 5),
            ];
            let n: usize = shape_u8.iter().product();
            let f: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let a = Array::from_shape_vec(IxDyn(&shape_u8).f(), f.clone()).unwrap();
            let expected: Vec<u8> = a.iter().copied().collect();
            assert_eq!(fortran_to_c(&shape_u8, &f), expected, "{shape_u8:?}");
        }
    }

    #[test]
    fn stems() {
        assert_eq!(
            image_stem(Path::new("a/case01.nii.gz")).as_deref(),
            Some("case01")
        );
        assert_eq!(image_stem(Path::new("x.PNG")).as_deref(), Some("x"));
        assert_eq!(image_stem(Path::new("notes.txt")), None);
    }
}
