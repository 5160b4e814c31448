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

use std::path::{Path, PathBuf};

use ::nifti::NiftiHeader;
use rayon::prelude::*;

use crate::labels::LabelSet;
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
    #[error("{}: shape {shape:?} has an axis of length 0 (no pixels to read)", .path.display())]
    EmptyShape { path: PathBuf, shape: Vec<usize> },
    #[error("{}: prediction has {count} non-finite values (NaN or inf)", .path.display())]
    NonFinite { path: PathBuf, count: usize },
    #[error("{}: prediction values outside [0, 1] (min {min}, max {max}); expected probabilities or a 0/1 mask", .path.display())]
    OutOfRange { path: PathBuf, min: f64, max: f64 },
    #[error("{}: ground truth is not binary, values found: {values}; pass --gt-threshold to binarise it, or --labels / --regions for a label map", .path.display())]
    NonBinary { path: PathBuf, values: String },
    #[error("{}: ground truth has {count} non-finite values (NaN or inf)", .path.display())]
    NonFiniteGt { path: PathBuf, count: usize },
    #[error("{}: cannot write: {detail}", .path.display())]
    Write { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, IoError>;

/// Suffixes that mark a mask file beside its image (`case_seg.png` for `case.png`): `evaluate`'s ground-truth folders
/// and training data folders. None is a suffix of another, so the order does not matter.
pub const MASK_SUFFIXES: [&str; 3] = ["_seg", "_mask", "_segmentation"];

/// `stem` without its mask suffix, `None` when it has none.
pub fn strip_mask_suffix(stem: &str) -> Option<&str> {
    MASK_SUFFIXES.iter().find_map(|s| stem.strip_suffix(s))
}

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

    /// The voxels whose value is one of `labels` (`--labels`, `--regions`): ground truth and prediction alike are
    /// label maps then.
    pub fn label_mask(&self, labels: &LabelSet) -> Mask {
        Mask::new(
            self.storage_shape(),
            self.storage_spacing(),
            self.values.map_bool(|x| labels.contains(x)),
        )
    }

    /// The values of `labels` that occur in the file.
    pub fn labels_present(&self, labels: &LabelSet) -> Vec<i64> {
        let mut seen = vec![false; labels.values().len()];
        let mut mark = |x: f64| {
            if labels.contains(x) {
                if let Ok(k) = labels.values().binary_search(&(x as i64)) {
                    seen[k] = true;
                }
            }
        };
        match &self.values {
            RawValues::U8(v) => {
                let mut hist = [false; 256];
                v.iter().for_each(|&b| hist[b as usize] = true);
                (0..256).filter(|&b| hist[b]).for_each(|b| mark(b as f64));
            }
            other => other.for_each(mark),
        }
        labels
            .values()
            .iter()
            .zip(seen)
            .filter(|(_, s)| *s)
            .map(|(&l, _)| l)
            .collect()
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
            self.check_probabilities()?;
            match &self.values {
                RawValues::F32(v) => v.clone(),
                other => other.map_f32(|x| x as f32),
            }
        } else {
            self.values.map_f32(self.integer_prob())
        };
        Ok(ProbMap::new(
            self.storage_shape(),
            self.storage_spacing(),
            data,
        ))
    }

    /// Float data must be probabilities: finite and in [0, 1].
    fn check_probabilities(&self) -> Result<()> {
        let (min, max, non_finite) = match &self.values {
            RawValues::F32(v) => f32_range(v),
            other => {
                let (mut min, mut max, mut non_finite) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
                other.for_each(|x| {
                    if x.is_finite() {
                        min = min.min(x);
                        max = max.max(x);
                    } else {
                        non_finite += 1;
                    }
                });
                (min, max, non_finite)
            }
        };
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
        Ok(())
    }

    /// Float data binarised at `threshold` as `to_prob_map()?.threshold(threshold)` binarises it, without the f32
    /// copy in between.
    fn float_mask(&self, threshold: f32) -> Result<Mask> {
        self.check_probabilities()?;
        let data = match &self.values {
            RawValues::F32(v) => v.par_iter().map(|&p| binarize(p, threshold)).collect(),
            other => other.map_bool(|x| binarize(x as f32, threshold)),
        };
        Ok(Mask::new(
            self.storage_shape(),
            self.storage_spacing(),
            data,
        ))
    }

    /// The prediction binarised at `threshold`: the same values as `to_prob_map()?.threshold(threshold)`, but 8-bit
    /// data never becomes an f32 map (4 bytes per voxel; 270 MB for a 512x512x256 volume): one decision per byte
    /// value.
    pub fn to_pred_mask(&self, threshold: f32) -> Result<Mask> {
        if self.dtype.is_float() {
            return self.float_mask(threshold);
        }
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
        if self.dtype.is_float() {
            return self.float_mask(threshold);
        }
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
/// The smallest and largest finite value of `v` and how many are not finite, in loops that vectorise (a probability
/// map is read once more for this check than for its use). `min`/`max` are only meaningful when every value is
/// finite, which is the only case in which they are used.
fn f32_range(v: &[f32]) -> (f64, f64, usize) {
    let (min, max, non_finite) = v
        .par_chunks(1 << 16)
        .map(|c| {
            let non_finite = c
                .iter()
                .map(|x| usize::from(x.to_bits() & 0x7f80_0000 == 0x7f80_0000))
                .sum::<usize>();
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for &x in c {
                lo = if x < lo { x } else { lo };
                hi = if x > hi { x } else { hi };
            }
            (lo, hi, non_finite)
        })
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY, 0),
            |a, b| (a.0.min(b.0), a.1.max(b.1), a.2 + b.2),
        );
    (min as f64, max as f64, non_finite)
}

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
    if shape.contains(&0) && (shape.len() == 2 || shape.len() == 3) {
        Err(IoError::EmptyShape {
            path: path.to_path_buf(),
            shape,
        })
    } else if shape.len() == 2 || shape.len() == 3 {
        Ok(shape)
    } else {
        Err(IoError::UnsupportedShape {
            path: path.to_path_buf(),
            shape,
        })
    }
}

mod atomic;
mod nifti;
mod npy;
mod png;
#[cfg(test)]
mod tests;

pub use atomic::*;
pub use nifti::*;
pub use npy::*;
pub use png::*;
