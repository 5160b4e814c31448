//! Training data: sources (embedded sets, folders), preprocessing once at load (resize to the network size,
//! per-channel z-score), case-level splits, and batches with augmentation and foreground oversampling.
//!
//! Every sample is decoded and preprocessed once and kept in memory; per-step work is only cropping, flipping and
//! jittering into a batch buffer, which the trainer does in a background thread.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use seglab_metrics::io;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::synth;

/// One 2D sample after preprocessing.
#[derive(Clone, Debug)]
pub struct Sample {
    pub id: String,
    /// The split unit: slices of one volume (or one patient) share a case and are never split apart.
    pub case: String,
    /// `channels x size x size`, z-scored as `LoadOptions::normalization` says.
    pub image: Vec<f32>,
    /// `size x size`, 1 = lesion.
    pub mask: Vec<u8>,
    pub fg_pixels: usize,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    /// The spec it was loaded from (`builtin:phantoms`, a folder path...).
    pub name: String,
    pub channels: usize,
    pub size: usize,
    pub samples: Vec<Sample>,
}

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

pub const PHANTOMS: &str = "builtin:phantoms";
pub const TUMORS2D: &str = "builtin:tumors2d";

/// Mask file name suffixes accepted next to `<id>` (same list as `seglab evaluate`).
pub const MASK_SUFFIXES: [&str; 4] = ["", "_seg", "_mask", "_segmentation"];

/// A decoded image at its original resolution: `channels x height x width`.
#[derive(Clone, Debug)]
pub struct RawImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Case of a slice id: `<case>_z<k>` (the convention of `seglab`'s 3D-to-2D slicing and of tumors2d) -> `<case>`.
pub fn case_of(id: &str) -> &str {
    if let Some(pos) = id.rfind("_z") {
        let digits = &id[pos + 2..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return &id[..pos];
        }
    }
    id
}

pub fn load(spec: &str, opts: &LoadOptions) -> Result<Dataset> {
    if opts.size < 16 || opts.size > 1024 {
        return Err(Error::new(format!(
            "--size must be in 16..=1024, got {}",
            opts.size
        )));
    }
    let samples = match spec {
        PHANTOMS => load_phantoms(opts),
        TUMORS2D => load_tumors2d(opts)?,
        s if s.starts_with("builtin:") => {
            return Err(Error::new(format!(
                "unknown data set {s} (builtin sets: {PHANTOMS}, {TUMORS2D})"
            )))
        }
        path => load_folder(Path::new(path), opts)?,
    };
    let channels = samples
        .first()
        .map(|s| s.image.len() / (opts.size * opts.size))
        .unwrap_or(1);
    Ok(Dataset {
        name: spec.to_string(),
        channels,
        size: opts.size,
        samples,
    })
}

fn load_phantoms(opts: &LoadOptions) -> Vec<Sample> {
    use rayon::prelude::*;
    (0..opts.phantom_count)
        .into_par_iter()
        .map(|i| {
            let p = synth::phantom(opts.phantom_seed, i, opts.size);
            let raw = RawImage {
                channels: 1,
                height: p.size,
                width: p.size,
                data: p.image.iter().map(|&v| v as f32).collect(),
            };
            let id = format!("phantom_{i:04}");
            make_sample(id.clone(), id, raw, p.size, p.size, &p.mask, opts)
        })
        .collect()
}

fn load_tumors2d(opts: &LoadOptions) -> Result<Vec<Sample>> {
    crate::tumors2d_files::TUMORS2D
        .iter()
        .map(|(id, img, mask)| {
            let raw = decode_image(img).map_err(|e| Error::new(format!("embedded {id}: {e}")))?;
            let (h, w, m) =
                decode_mask(mask).map_err(|e| Error::new(format!("embedded mask {id}: {e}")))?;
            Ok(make_sample(
                id.to_string(),
                case_of(id).to_string(),
                raw,
                h,
                w,
                &m,
                opts,
            ))
        })
        .collect()
}

fn image_files(d: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map_err(|e| Error::new(format!("{}: {e}", d.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && io::image_stem(p).is_some())
        .collect();
    v.sort();
    Ok(v)
}

fn stem(p: &Path) -> String {
    io::image_stem(p).unwrap_or_default()
}

/// One training case on disk: its image files (one per channel/modality) and its mask.
#[derive(Clone, Debug)]
pub struct CaseFiles {
    pub id: String,
    pub images: Vec<PathBuf>,
    pub mask: PathBuf,
}

fn pairing_error(dir: &Path, missing_masks: &[String], orphan_masks: &[String]) -> Result<()> {
    if missing_masks.is_empty() && orphan_masks.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{}: images and masks do not pair up", dir.display());
    if !missing_masks.is_empty() {
        msg += &format!("; images without a mask: {}", preview(missing_masks));
    }
    if !orphan_masks.is_empty() {
        msg += &format!("; masks without an image: {}", preview(orphan_masks));
    }
    Err(Error::new(msg))
}

/// Pairs the files of a data folder: `DIR/images/<id>.<ext>` with `DIR/masks/<id>{,_seg,_mask,_segmentation}.<ext>`
/// (PNG, NIfTI or NPY), or the nnU-Net raw layout `DIR/imagesTr/<case>_<kkkk>.nii.gz` + `DIR/labelsTr/<case>.nii.gz`.
pub fn pair_folder(dir: &Path) -> Result<Vec<CaseFiles>> {
    if !dir.is_dir() {
        return Err(Error::new(format!(
            "{}: data folder not found",
            dir.display()
        )));
    }
    if dir.join("imagesTr").is_dir() && dir.join("labelsTr").is_dir() {
        return pair_nnunet(dir);
    }
    let images_dir = dir.join("images");
    let masks_dir = dir.join("masks");
    if !images_dir.is_dir() || !masks_dir.is_dir() {
        return Err(Error::new(format!(
            "{}: expected sub-folders images/ and masks/, or imagesTr/ and labelsTr/ (or a builtin set: {PHANTOMS}, {TUMORS2D})",
            dir.display()
        )));
    }
    let images = image_files(&images_dir)?;
    let masks = image_files(&masks_dir)?;
    if images.is_empty() {
        return Err(Error::new(format!(
            "{}: no images (.png, .nii, .nii.gz, .npy)",
            images_dir.display()
        )));
    }
    let mut mask_by_id: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in &masks {
        let s = stem(m);
        let id = MASK_SUFFIXES[1..]
            .iter()
            .find_map(|suf| s.strip_suffix(suf))
            .unwrap_or(&s)
            .to_string();
        // An exact `<id>.png` wins over a suffixed one.
        if s == id || !mask_by_id.contains_key(&id) {
            mask_by_id.insert(id, m.clone());
        }
    }
    let mut pairs = Vec::new();
    let mut missing_masks = Vec::new();
    let mut used = BTreeSet::new();
    for img in &images {
        let id = stem(img);
        match mask_by_id.get(&id) {
            Some(m) => {
                used.insert(id.clone());
                pairs.push(CaseFiles {
                    id,
                    images: vec![img.clone()],
                    mask: m.clone(),
                });
            }
            None => missing_masks.push(id),
        }
    }
    let orphan_masks: Vec<String> = mask_by_id
        .keys()
        .filter(|id| !used.contains(*id))
        .cloned()
        .collect();
    pairing_error(dir, &missing_masks, &orphan_masks)?;
    Ok(pairs)
}

fn pair_nnunet(dir: &Path) -> Result<Vec<CaseFiles>> {
    let images = image_files(&dir.join("imagesTr"))?;
    let labels = image_files(&dir.join("labelsTr"))?;
    if images.is_empty() {
        return Err(Error::new(format!(
            "{}: no images",
            dir.join("imagesTr").display()
        )));
    }
    let mut by_case: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for img in images {
        let s = stem(&img);
        let case = match s.rsplit_once('_') {
            Some((c, k)) if k.len() == 4 && k.bytes().all(|b| b.is_ascii_digit()) => c.to_string(),
            _ => {
                return Err(Error::new(format!(
                    "{}: nnU-Net image names end in _<channel> (e.g. {s}_0000)",
                    img.display()
                )))
            }
        };
        by_case.entry(case).or_default().push(img);
    }
    let label_by_case: BTreeMap<String, PathBuf> =
        labels.into_iter().map(|l| (stem(&l), l)).collect();
    let missing: Vec<String> = by_case
        .keys()
        .filter(|c| !label_by_case.contains_key(*c))
        .cloned()
        .collect();
    let orphan: Vec<String> = label_by_case
        .keys()
        .filter(|c| !by_case.contains_key(*c))
        .cloned()
        .collect();
    pairing_error(dir, &missing, &orphan)?;
    Ok(by_case
        .into_iter()
        .map(|(case, images)| {
            let mask = label_by_case[&case].clone();
            CaseFiles {
                id: case,
                images,
                mask,
            }
        })
        .collect())
}

/// 2D slices of a 2D or 3D array: a 2D array is its own slice; a 3D array `(X, Y, Z)` gives `Z` slices `(X, Y)`
/// (axial for NIfTI), each returned with its index.
pub fn slices(shape: &[usize], data: &[f32]) -> Vec<(usize, usize, Vec<f32>)> {
    match shape {
        [h, w] => vec![(*h, *w, data.to_vec())],
        [x, y, z] => (0..*z)
            .map(|k| (*x, *y, (0..x * y).map(|i| data[i * z + k]).collect()))
            .collect(),
        _ => vec![],
    }
}

/// Writes slice planes back into a 3D `(X, Y, Z)` array (the inverse of [`slices`]).
pub fn unslice(x: usize, y: usize, planes: &[Vec<f32>]) -> Vec<f32> {
    let z = planes.len();
    let mut out = vec![0f32; x * y * z];
    for (k, p) in planes.iter().enumerate() {
        for i in 0..x * y {
            out[i * z + k] = p[i];
        }
    }
    out
}

fn load_case(case: &CaseFiles, opts: &LoadOptions) -> Result<Vec<Sample>> {
    let mut channels: Vec<io::Intensities> = Vec::new();
    for p in &case.images {
        channels.push(io::read_intensities(p).map_err(|e| Error::new(e.to_string()))?);
    }
    // `value > 0` is lesion; labels with several classes (1, 2, ...) are all lesion.
    let mask = io::read(&case.mask)
        .and_then(|r| r.to_gt_mask(Some(f64::MIN_POSITIVE)))
        .map_err(|e| Error::new(e.to_string()))?;
    let shape = channels[0].shape.clone();
    for (p, c) in case.images.iter().zip(&channels) {
        if c.shape != shape {
            return Err(Error::new(format!(
                "{}: shape {:?} differs from {:?} of {}",
                p.display(),
                c.shape,
                shape,
                case.images[0].display()
            )));
        }
    }
    if mask.shape() != shape.as_slice() {
        return Err(Error::new(format!(
            "{}: mask is {} but its image {} is {}",
            case.mask.display(),
            dims(mask.shape()),
            case.images[0].display(),
            dims(&shape)
        )));
    }
    let mask_f: Vec<f32> = mask.data().iter().map(|&b| b as u8 as f32).collect();
    let mask_slices = slices(&shape, &mask_f);
    // Per channel (file and colour channel), the slices of that channel.
    let mut channel_slices: Vec<Vec<(usize, usize, Vec<f32>)>> = Vec::new();
    for c in &channels {
        let n: usize = c.shape.iter().product();
        for k in 0..c.channels {
            channel_slices.push(slices(&c.shape, &c.data[k * n..(k + 1) * n]));
        }
    }
    let is_3d = shape.len() == 3;
    Ok(mask_slices
        .into_iter()
        .enumerate()
        .map(|(k, (h, w, m))| {
            let mut data = Vec::with_capacity(channel_slices.len() * h * w);
            for cs in &channel_slices {
                data.extend_from_slice(&cs[k].2);
            }
            let raw = RawImage {
                channels: channel_slices.len(),
                height: h,
                width: w,
                data,
            };
            let m: Vec<u8> = m.iter().map(|&v| v as u8).collect();
            let id = if is_3d {
                format!("{}_z{k:03}", case.id)
            } else {
                case.id.clone()
            };
            // 2D files may be slices named <case>_z<k>; slices of a volume belong to that volume.
            let case_id = if is_3d {
                case.id.clone()
            } else {
                case_of(&case.id).to_string()
            };
            make_sample(id, case_id, raw, h, w, &m, opts)
        })
        .collect())
}

fn preview(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(10).map(|s| s.as_str()).collect();
    if ids.len() > 10 {
        format!("{} (and {} more)", shown.join(", "), ids.len() - 10)
    } else {
        shown.join(", ")
    }
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Vec<Sample>> {
    use rayon::prelude::*;
    let cases = pair_folder(dir)?;
    let per_case: Vec<Vec<Sample>> = cases
        .par_iter()
        .map(|c| load_case(c, opts))
        .collect::<Result<_>>()?;
    let samples: Vec<Sample> = per_case.into_iter().flatten().collect();
    let c0 = samples[0].image.len();
    if let Some(s) = samples.iter().find(|s| s.image.len() != c0) {
        return Err(Error::new(format!(
            "{}: image {} has a different number of channels than {}",
            dir.display(),
            s.id,
            samples[0].id
        )));
    }
    Ok(samples)
}

/// Reads an image file (PNG, NIfTI, NPY; 2D or 3D) as intensities, via `seglab_metrics::io`.
pub fn read_image(path: &Path) -> Result<io::Intensities> {
    io::read_intensities(path).map_err(|e| Error::new(e.to_string()))
}

/// Decodes an embedded PNG (8/16-bit gray, RGB or RGBA; alpha dropped) to float intensities.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RawImage, String> {
    use image::DynamicImage as D;
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("not a readable PNG ({e})"))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (channels, interleaved): (usize, Vec<f32>) = match &img {
        D::ImageLuma8(b) => (1, b.as_raw().iter().map(|&v| v as f32).collect()),
        D::ImageLuma16(b) => (1, b.as_raw().iter().map(|&v| v as f32).collect()),
        D::ImageLumaA8(_) | D::ImageLumaA16(_) => (1, img.to_luma32f().into_raw()),
        _ => (3, img.to_rgb32f().into_raw()),
    };
    // Planar CHW, the tensor layout.
    let mut data = vec![0f32; channels * h * w];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            data[c * h * w + i] = v;
        }
    }
    Ok(RawImage {
        channels,
        height: h,
        width: w,
        data,
    })
}

/// Decodes a mask PNG: any value > 0 is lesion.
pub fn decode_mask(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("not a readable PNG ({e})"))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let m = img
        .to_luma16()
        .into_raw()
        .iter()
        .map(|&v| (v > 0) as u8)
        .collect();
    Ok((h, w, m))
}

/// Bilinear sample of a row-major plane of width `w` between rows `y0, y1` and columns `x0, x1`, at fractions `ty`, `tx`.
fn bilinear(
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

fn make_sample(
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

/// Case ids of each side of a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

impl Dataset {
    pub fn cases(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.samples.iter().map(|s| s.case.as_str()).collect();
        set.into_iter().map(String::from).collect()
    }

    /// Sample indices of the given cases, in dataset order.
    pub fn indices_of(&self, cases: &[String]) -> Vec<usize> {
        let set: BTreeSet<&str> = cases.iter().map(|s| s.as_str()).collect();
        (0..self.samples.len())
            .filter(|&i| set.contains(self.samples[i].case.as_str()))
            .collect()
    }
}

/// A seeded split by case: `round(cases * val_fraction)` validation cases, at least one on each side.
pub fn split_by_case(ds: &Dataset, val_fraction: f64, seed: u64) -> Result<Split> {
    if !(0.0..1.0).contains(&val_fraction) || val_fraction <= 0.0 {
        return Err(Error::new(format!(
            "--val-fraction must be in (0, 1), got {val_fraction}"
        )));
    }
    let mut cases = ds.cases();
    if cases.len() < 2 {
        return Err(Error::new(format!(
            "{}: {} case(s); a train/validation split needs at least 2",
            ds.name,
            cases.len()
        )));
    }
    let n_val = ((cases.len() as f64 * val_fraction).round() as usize).clamp(1, cases.len() - 1);
    let mut rng = Rng::derive(seed, "split");
    rng.shuffle(&mut cases);
    let mut val: Vec<String> = cases[..n_val].to_vec();
    let mut train: Vec<String> = cases[n_val..].to_vec();
    val.sort();
    train.sort();
    Ok(Split { train, val })
}

/// Checks a user-given split against the data set.
pub fn check_split(ds: &Dataset, split: &Split, source: &str) -> Result<()> {
    let known: BTreeSet<String> = ds.cases().into_iter().collect();
    let unknown: Vec<String> = split
        .train
        .iter()
        .chain(&split.val)
        .filter(|c| !known.contains(*c))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::new(format!(
            "{source}: cases not in the data: {}",
            preview(&unknown)
        )));
    }
    let train: BTreeSet<&String> = split.train.iter().collect();
    let both: Vec<String> = split
        .val
        .iter()
        .filter(|c| train.contains(c))
        .cloned()
        .collect();
    if !both.is_empty() {
        return Err(Error::new(format!(
            "{source}: cases in both train and val: {}",
            preview(&both)
        )));
    }
    if split.train.is_empty() || split.val.is_empty() {
        return Err(Error::new(format!(
            "{source}: train and val must both list at least one case"
        )));
    }
    Ok(())
}

pub fn read_split(path: &Path) -> Result<Split> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::new(format!("{}: not a split file ({e})", path.display())))
}

/// Augmentation and sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Master switch for flips, rotations and intensity jitter.
    pub enabled: bool,
    pub flips: bool,
    /// 90-degree rotations (square inputs only).
    pub rot90: bool,
    /// Intensity jitter: `x * (1 + u) + v`, `u, v` uniform in `±intensity` (z-scored units).
    pub intensity: f32,
    /// Colour jitter for multi-channel images: each channel is further scaled by `1 + w`, `w` uniform in
    /// `±colour`, drawn per channel (0: off; gray images are unaffected).
    pub colour: f32,
    /// Random zoom about the image centre by a factor log-uniform in `[1/(1+scale), 1+scale]` (0: off): bilinear
    /// for the image, nearest for the mask, background (0) where the zoomed-out image leaves the frame.
    pub scale: f32,
    /// Side of the training patch; `None` trains on the whole (resized) image.
    pub patch: Option<usize>,
    /// Fraction of batch slots forced to contain lesion (nnU-Net uses 1/3): with whole images the slot takes a
    /// random lesion image; with patches the patch is also centred on a random lesion pixel.
    pub fg_oversample: f64,
    /// Batch augmentation (Hoffer et al., "Augment your batch", CVPR 2020): each image of a batch appears this
    /// many times, each copy augmented independently. The number of steps per epoch is unchanged; each step costs
    /// `repeats` times more and averages over more views of the same images.
    /// A config written before this key existed trained with 1 view and reads as 1.
    #[serde(default = "AugmentConfig::one_view")]
    pub repeats: usize,
}

impl AugmentConfig {
    fn one_view() -> usize {
        1
    }

    /// Side of the training batches for images of side `size`: the patch, or the whole image.
    pub fn batch_side(&self, size: usize) -> usize {
        self.patch.unwrap_or(size).min(size)
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            flips: true,
            rot90: true,
            intensity: 0.1,
            colour: 0.0,
            scale: 0.0,
            patch: None,
            fg_oversample: 0.33,
            repeats: 2,
        }
    }
}

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
fn zoom_sample(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        load(
            PHANTOMS,
            &LoadOptions {
                size: 32,
                phantom_count: n,
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn case_of_strips_slice_suffix_only() {
        assert_eq!(case_of("lung2_z015"), "lung2");
        assert_eq!(case_of("img_zebra"), "img_zebra");
        assert_eq!(case_of("abc"), "abc");
    }

    #[test]
    fn tumors2d_is_embedded_and_split_by_case() {
        let ds = load(
            TUMORS2D,
            &LoadOptions {
                size: 32,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.samples.len(), 27);
        assert_eq!(
            ds.cases(),
            ["brain1", "brain2", "breast1", "lung1", "lung2"]
        );
        // Resizing to 32 may erase the smallest lesions (41 pixels at 256x256), not most of them.
        assert!(ds.samples.iter().filter(|s| s.fg_pixels > 0).count() >= 20);
        let split = split_by_case(&ds, 0.2, 0).unwrap();
        assert_eq!(split.val.len(), 1);
        let val = ds.indices_of(&split.val);
        let train = ds.indices_of(&split.train);
        assert_eq!(val.len() + train.len(), 27);
        assert!(val.iter().all(|&i| split.val.contains(&ds.samples[i].case)));
    }

    #[test]
    fn preprocessing_is_zscored() {
        let ds = tiny(3);
        for s in &ds.samples {
            let n = s.image.len() as f64;
            let mean = s.image.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = s
                .image
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!(
                mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn joint_zscore_keeps_the_contrast_between_channels() {
        // Channel 0 is a dim ramp, channel 1 the same ramp 100 brighter.
        let plane: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut data = plane.clone();
        data.extend(plane.iter().map(|v| v + 100.0));
        let raw = RawImage {
            channels: 2,
            height: 4,
            width: 4,
            data,
        };
        let opts = |normalization| LoadOptions {
            size: 4,
            normalization,
            ..LoadOptions::default()
        };
        let joint = preprocess(&raw, &opts(Normalization::ZScore));
        let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
        assert!(mean(&joint).abs() < 1e-5);
        assert!(mean(&joint[16..]) - mean(&joint[..16]) > 1.5);
        let per_channel = preprocess(&raw, &opts(Normalization::ZScoreChannel));
        assert!(mean(&per_channel[..16]).abs() < 1e-5 && mean(&per_channel[16..]).abs() < 1e-5);
        // Within one channel both keep the same shape: the ramp rises.
        assert!(joint[15] > joint[0] && per_channel[31] > per_channel[16]);
    }

    #[test]
    fn colour_jitter_scales_each_channel_on_its_own() {
        let ds = Dataset {
            name: "rgb".into(),
            channels: 3,
            size: 4,
            samples: vec![Sample {
                id: "a".into(),
                case: "a".into(),
                image: vec![1.0; 3 * 16],
                mask: vec![0; 16],
                fg_pixels: 0,
            }],
        };
        let aug = |colour| AugmentConfig {
            intensity: 0.0,
            colour,
            ..Default::default()
        };
        let gains = |colour| {
            let b = make_batch(&ds, &[0], &aug(colour), &mut Rng::new(5));
            (0..3).map(|c| b.x[c * 16]).collect::<Vec<f32>>()
        };
        assert_eq!(gains(0.0), vec![1.0; 3]);
        let g = gains(0.5);
        assert!(g.iter().all(|v| (0.5..=1.5).contains(v)), "{g:?}");
        assert!(g[0] != g[1] && g[1] != g[2], "{g:?}");
        // One gain per channel: every pixel of a constant channel stays equal.
        let b = make_batch(&ds, &[0], &aug(0.5), &mut Rng::new(5));
        assert!(b.x.chunks(16).all(|p| p.iter().all(|&v| v == p[0])));
    }

    #[test]
    fn configs_without_normalization_keep_their_per_channel_zscore() {
        let old: LoadOptions = serde_json::from_str(
            r#"{"size": 64, "phantom_count": 10, "phantom_seed": 0, "window": null}"#,
        )
        .unwrap();
        assert_eq!(old.normalization, Normalization::ZScoreChannel);
        assert_eq!(LoadOptions::default().normalization, Normalization::ZScore);
        // The names the command line and the docs use.
        for (n, name) in [
            (Normalization::ZScore, "\"zscore\""),
            (Normalization::ZScoreChannel, "\"zscore-channel\""),
        ] {
            assert_eq!(serde_json::to_string(&n).unwrap(), name);
        }
        for (n, old_name) in [
            (Normalization::ZScore, "\"z-score\""),
            (Normalization::ZScoreChannel, "\"z-score-channel\""),
        ] {
            assert_eq!(serde_json::from_str::<Normalization>(old_name).unwrap(), n);
        }
        let back: LoadOptions =
            serde_json::from_str(&serde_json::to_string(&LoadOptions::default()).unwrap()).unwrap();
        assert_eq!(back, LoadOptions::default());
    }

    #[test]
    fn zoom_keeps_image_and_mask_aligned() {
        // A square lesion of image value 5 on a background of 1: after any zoom the mask marks the pixels whose
        // nearest source pixel is in the square, so their bilinear value has at least a quarter of the lesion's
        // weight (a corner): >= 2 (a misaligned mask would mark pixels of value 1).
        let size = 32;
        let mut image = vec![1.0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for y in 10..20 {
            for x in 12..18 {
                image[y * size + x] = 5.0;
                mask[y * size + x] = 1;
            }
        }
        let (same, same_mask) = zoom_sample(&image, &mask, 1, size, 1.0);
        assert_eq!((same, same_mask), (image.clone(), mask.clone()));
        for zoom in [0.8, 1.25] {
            let (img, m) = zoom_sample(&image, &mask, 1, size, zoom);
            let lesion: usize = m.iter().map(|&v| v as usize).sum();
            // Area scales with zoom^2 (60 pixels at 1), within the rounding of the square's edges.
            let expected = 60.0 * zoom * zoom;
            assert!(
                (lesion as f64 - expected).abs() < 0.35 * expected,
                "{zoom}: {lesion} vs {expected}"
            );
            for (v, &l) in img.iter().zip(&m) {
                if l == 1 {
                    assert!(
                        *v >= 2.0 - 1e-5,
                        "lesion pixel with image value {v} at zoom {zoom}"
                    );
                }
            }
            // Zooming out leaves background (0) at the frame's edge; zooming in fills it.
            assert_eq!(img[0] == 0.0, zoom < 1.0, "{zoom}");
        }
        // Through make_batch: the lesion's pixels still carry the lesion's values.
        let ds = tiny(6);
        let i = (0..6).find(|&i| ds.samples[i].fg_pixels > 0).unwrap();
        let aug = AugmentConfig {
            intensity: 0.0,
            scale: 0.3,
            ..Default::default()
        };
        let mut rng = Rng::new(5);
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let b = make_batch(&ds, &[i], &aug, &mut rng);
            sizes.insert(b.t.iter().filter(|&&t| t > 0.5).count());
        }
        assert!(
            sizes.len() > 1,
            "zoom never changed the lesion area: {sizes:?}"
        );
    }

    #[test]
    fn augmentation_moves_image_and_mask_together() {
        let ds = tiny(6);
        let i = (0..6).find(|&i| ds.samples[i].fg_pixels > 0).unwrap();
        let aug = AugmentConfig {
            intensity: 0.0,
            ..Default::default()
        };
        let mut rng = Rng::new(3);
        for _ in 0..8 {
            let b = make_batch(&ds, &[i], &aug, &mut rng);
            // Geometric transforms permute pixels: the multiset of (value, label) pairs is unchanged.
            let mut pairs: Vec<(i64, u8)> =
                b.x.iter()
                    .zip(&b.t)
                    .map(|(&v, &m)| ((v * 1e4) as i64, m as u8))
                    .collect();
            let mut orig: Vec<(i64, u8)> = ds.samples[i]
                .image
                .iter()
                .zip(&ds.samples[i].mask)
                .map(|(&v, &m)| ((v * 1e4) as i64, m))
                .collect();
            pairs.sort();
            orig.sort();
            assert_eq!(pairs, orig);
        }
    }

    #[test]
    fn patches_oversample_lesions() {
        let ds = tiny(20);
        let train: Vec<usize> = (0..20).collect();
        let aug = AugmentConfig {
            patch: Some(8),
            fg_oversample: 1.0,
            repeats: 1,
            ..Default::default()
        };
        let mut rng = Rng::new(1);
        let plan = epoch_plan(&ds, &train, 4, &aug, &mut rng);
        for idx in &plan {
            let b = make_batch(&ds, idx, &aug, &mut rng);
            assert_eq!(b.x.len(), 4 * 64);
            for k in 0..4 {
                assert!(
                    b.t[k * 64..(k + 1) * 64].contains(&1.0),
                    "patch {k} has no lesion"
                );
            }
        }
    }

    #[test]
    fn repeats_show_each_image_several_times_differently_augmented() {
        let ds = tiny(12);
        let train: Vec<usize> = (0..12).collect();
        let aug = AugmentConfig {
            repeats: 3,
            ..Default::default()
        };
        let one = AugmentConfig {
            repeats: 1,
            ..Default::default()
        };
        let single = epoch_plan(&ds, &train, 4, &one, &mut Rng::new(2));
        let plan = epoch_plan(&ds, &train, 4, &aug, &mut Rng::new(2));
        assert_eq!(plan.len(), single.len());
        for (p, s) in plan.iter().zip(&single) {
            let expanded: Vec<usize> = s.iter().flat_map(|&i| [i, i, i]).collect();
            assert_eq!(p, &expanded);
        }
        let b = make_batch(&ds, &plan[0], &aug, &mut Rng::new(3));
        assert_eq!(b.n, 12);
        let plane = 32 * 32;
        let copies: Vec<&[f32]> = (0..3).map(|k| &b.x[k * plane..(k + 1) * plane]).collect();
        // The intensity jitter alone makes every copy differ.
        assert!(copies[0] != copies[1] && copies[1] != copies[2] && copies[0] != copies[2]);
    }

    #[test]
    fn halved_batches_average_images_and_take_mask_majority() {
        // Two samples, two channels, side 4: values distinct everywhere so a misplaced block shows.
        let (n, c, s) = (2, 2, 4);
        let x: Vec<f32> = (0..n * c * s * s).map(|i| (i * i % 97) as f32).collect();
        let mut t = vec![0f32; n * s * s];
        // Sample 0: block (0,0) has 2 of 4 lesion pixels, block (0,1) 1 of 4, block (1,1) all 4.
        for p in [0, 1, 2, 10, 11, 14, 15] {
            t[p] = 1.0;
        }
        // Sample 1: block (1,0) has 3 of 4.
        for p in [8, 12, 13] {
            t[s * s + p] = 1.0;
        }
        let b = Batch {
            n,
            side: s,
            x: x.clone(),
            t,
        }
        .halved();
        assert_eq!(
            (b.n, b.side, b.x.len(), b.t.len()),
            (2, 2, n * c * 4, n * 4)
        );
        for plane in 0..n * c {
            for (by, bx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let at = |y: usize, x_: usize| x[plane * s * s + (2 * by + y) * s + 2 * bx + x_];
                let mean = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
                assert_eq!(
                    b.x[plane * 4 + by * 2 + bx],
                    mean,
                    "plane {plane} block {by},{bx}"
                );
            }
        }
        assert_eq!(b.t, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn nnunet_volumes_become_slices_of_one_case() {
        let dir = std::env::temp_dir().join(format!("seglab-nnunet-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
        std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
        let shape = [16usize, 16, 4];
        for (case, z_lesion) in [("caseA", 1usize), ("caseB", 2)] {
            let n = 16 * 16 * 4;
            let img: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
            // Lesion: a 4x4 square on slice `z_lesion` only (last axis is z).
            let lab: Vec<bool> = (0..n)
                .map(|i| i % 4 == z_lesion && (i / 4) % 16 < 4 && (i / 64) < 4)
                .collect();
            let img_path = dir.join(format!("imagesTr/{case}_0000.nii.gz"));
            io::write_nifti(
                &img_path,
                &shape,
                &[1.0, 1.0, 2.5],
                io::NiftiData::F32(&img),
                None,
            )
            .unwrap();
            let lab_path = dir.join(format!("labelsTr/{case}.nii.gz"));
            io::write_nifti(
                &lab_path,
                &shape,
                &[1.0, 1.0, 2.5],
                io::NiftiData::Mask(&lab),
                None,
            )
            .unwrap();
        }
        let ds = load(
            dir.to_str().unwrap(),
            &LoadOptions {
                size: 16,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.samples.len(), 8);
        assert_eq!(ds.cases(), ["caseA", "caseB"]);
        let with_lesion: Vec<&str> = ds
            .samples
            .iter()
            .filter(|s| s.fg_pixels > 0)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(with_lesion, ["caseA_z001", "caseB_z002"]);
        assert!(ds
            .samples
            .iter()
            .all(|s| s.fg_pixels == 0 || s.fg_pixels == 16));
        let split = split_by_case(&ds, 0.5, 0).unwrap();
        assert_eq!(ds.indices_of(&split.val).len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn folder_errors_name_the_files() {
        let dir = std::env::temp_dir().join(format!("seglab-data-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::create_dir_all(dir.join("masks")).unwrap();
        let err = load(dir.to_str().unwrap(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no images"), "{err}");
        let png = |w: u32, h: u32| {
            let mut v = Vec::new();
            image::GrayImage::new(w, h)
                .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
                .unwrap();
            v
        };
        std::fs::write(dir.join("images/a.png"), png(8, 8)).unwrap();
        std::fs::write(dir.join("images/b.png"), png(8, 8)).unwrap();
        std::fs::write(dir.join("masks/a_seg.png"), png(8, 8)).unwrap();
        std::fs::write(dir.join("masks/c.png"), png(8, 8)).unwrap();
        let err = load(dir.to_str().unwrap(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("images without a mask: b") && err.contains("masks without an image: c"),
            "{err}"
        );
        std::fs::remove_file(dir.join("images/b.png")).unwrap();
        std::fs::remove_file(dir.join("masks/c.png")).unwrap();
        std::fs::write(dir.join("masks/a_seg.png"), png(4, 8)).unwrap();
        let err = load(dir.to_str().unwrap(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a_seg.png") && err.contains("mask is 8x4"),
            "{err}"
        );
        std::fs::write(dir.join("images/a.png"), b"not a png").unwrap();
        let err = load(dir.to_str().unwrap(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.png") && err.contains("corrupt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
