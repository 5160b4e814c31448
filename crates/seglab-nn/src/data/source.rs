//! Where samples come from: data folders (images/ + masks/, or the nnU-Net raw layout), pairing of image and mask
//! files, 3D volumes cut into 2D slices, and image decoding.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use seglab_metrics::io;

use super::{make_sample, LoadOptions, RawImage, Sample, PHANTOMS, TUMORS2D};
use crate::error::{Error, Result};

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

pub(super) fn image_files(d: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map_err(|e| Error::file(&d, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && io::image_stem(p).is_some())
        .collect();
    v.sort();
    Ok(v)
}

pub(super) fn stem(p: &Path) -> String {
    io::image_stem(p).unwrap_or_default()
}

/// One training case on disk: its image files (one per channel/modality) and its mask.
#[derive(Clone, Debug)]
pub struct CaseFiles {
    pub id: String,
    pub images: Vec<PathBuf>,
    pub mask: PathBuf,
}

pub(super) fn pairing_error(
    dir: &Path,
    missing_masks: &[String],
    orphan_masks: &[String],
) -> Result<()> {
    if missing_masks.is_empty() && orphan_masks.is_empty() {
        return Ok(());
    }
    let mut msg = "images and masks do not pair up".to_string();
    if !missing_masks.is_empty() {
        msg += &format!("; images without a mask: {}", preview(missing_masks));
    }
    if !orphan_masks.is_empty() {
        msg += &format!("; masks without an image: {}", preview(orphan_masks));
    }
    Err(Error::data(dir.display(), msg))
}

/// Pairs the files of a data folder: `DIR/images/<id>.<ext>` with `DIR/masks/<id>{,_seg,_mask,_segmentation}.<ext>`
/// (PNG, NIfTI or NPY), or the nnU-Net raw layout `DIR/imagesTr/<case>_<kkkk>.nii.gz` + `DIR/labelsTr/<case>.nii.gz`.
pub fn pair_folder(dir: &Path) -> Result<Vec<CaseFiles>> {
    if !dir.is_dir() {
        return Err(Error::data(dir.display(), "data folder not found"));
    }
    if dir.join("imagesTr").is_dir() && dir.join("labelsTr").is_dir() {
        return pair_nnunet(dir);
    }
    let images_dir = dir.join("images");
    let masks_dir = dir.join("masks");
    if !images_dir.is_dir() || !masks_dir.is_dir() {
        return Err(Error::data(dir.display(), format!("expected sub-folders images/ and masks/, or imagesTr/ and labelsTr/ (or a builtin set: {PHANTOMS}, {TUMORS2D})")));
    }
    let images = image_files(&images_dir)?;
    let masks = image_files(&masks_dir)?;
    if images.is_empty() {
        return Err(Error::data(
            images_dir.display(),
            "no images (.png, .nii, .nii.gz, .npy)",
        ));
    }
    let mut mask_by_id: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in &masks {
        let s = stem(m);
        let id = io::strip_mask_suffix(&s).unwrap_or(&s).to_string();
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

pub(super) fn pair_nnunet(dir: &Path) -> Result<Vec<CaseFiles>> {
    let images = image_files(&dir.join("imagesTr"))?;
    let labels = image_files(&dir.join("labelsTr"))?;
    if images.is_empty() {
        return Err(Error::data(dir.join("imagesTr").display(), "no images"));
    }
    let mut by_case: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for img in images {
        let s = stem(&img);
        let case = match s.rsplit_once('_') {
            Some((c, k)) if k.len() == 4 && k.bytes().all(|b| b.is_ascii_digit()) => c.to_string(),
            _ => {
                return Err(Error::data(
                    img.display(),
                    format!("nnU-Net image names end in _<channel> (e.g. {s}_0000)"),
                ))
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

pub(super) fn load_case(case: &CaseFiles, opts: &LoadOptions) -> Result<Vec<Sample>> {
    let mut channels: Vec<io::Intensities> = Vec::new();
    for p in &case.images {
        channels.push(io::read_intensities(p).map_err(Error::from)?);
    }
    // `value > 0` is lesion; labels with several classes (1, 2, ...) are all lesion.
    let mask = io::read(&case.mask)
        .and_then(|r| r.to_gt_mask(Some(f64::MIN_POSITIVE)))
        .map_err(Error::from)?;
    let shape = channels[0].shape.clone();
    for (p, c) in case.images.iter().zip(&channels) {
        if c.shape != shape {
            return Err(Error::data(
                p.display(),
                format!(
                    "shape {:?} differs from {:?} of {}",
                    c.shape,
                    shape,
                    case.images[0].display()
                ),
            ));
        }
    }
    if mask.shape() != shape.as_slice() {
        return Err(Error::data(
            case.mask.display(),
            format!(
                "mask is {} but its image {} is {}",
                dims(mask.shape()),
                case.images[0].display(),
                dims(&shape)
            ),
        ));
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

pub(super) fn preview(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(10).map(|s| s.as_str()).collect();
    if ids.len() > 10 {
        format!("{} (and {} more)", shown.join(", "), ids.len() - 10)
    } else {
        shown.join(", ")
    }
}

pub(super) fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

pub(super) fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Vec<Sample>> {
    use rayon::prelude::*;
    let cases = pair_folder(dir)?;
    let per_case: Vec<Vec<Sample>> = cases
        .par_iter()
        .map(|c| load_case(c, opts))
        .collect::<Result<_>>()?;
    let samples: Vec<Sample> = per_case.into_iter().flatten().collect();
    let c0 = samples[0].image.len();
    if let Some(s) = samples.iter().find(|s| s.image.len() != c0) {
        return Err(Error::data(
            dir.display(),
            format!(
                "image {} has a different number of channels than {}",
                s.id, samples[0].id
            ),
        ));
    }
    Ok(samples)
}

/// Reads an image file (PNG, NIfTI, NPY; 2D or 3D) as intensities, via `seglab_metrics::io`.
pub fn read_image(path: &Path) -> Result<io::Intensities> {
    io::read_intensities(path).map_err(Error::from)
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
