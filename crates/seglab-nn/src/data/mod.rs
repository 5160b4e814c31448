//! Training data: sources (embedded sets, folders), preprocessing once at load (resize to the network size,
//! per-channel z-score), case-level splits, and batches with augmentation and foreground oversampling.
//!
//! Every sample is decoded and preprocessed once and kept in memory; per-step work is only cropping, flipping and
//! jittering into a batch buffer, which the trainer does in a background thread.

mod augment;
mod batch;
mod preprocess;
mod source;
mod split;
#[cfg(test)]
mod tests;

pub use augment::AugmentConfig;
pub use batch::{epoch_plan, eval_batch, make_batch, Batch};
pub use preprocess::{preprocess, resize_mask, resize_plane, LoadOptions, Normalization, RawImage};
pub use source::{
    case_of, decode_image, decode_mask, pair_folder, read_image, slices, unslice, CaseFiles,
};
pub use split::{check_split, read_split, split_by_case, split_by_case_with_test, Split};

use preprocess::make_sample;
use source::load_folder;

use std::path::Path;

use crate::error::{Error, Result};
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

pub const PHANTOMS: &str = "builtin:phantoms";
pub const TUMORS2D: &str = "builtin:tumors2d";

pub fn load(spec: &str, opts: &LoadOptions) -> Result<Dataset> {
    if opts.size < 16 || opts.size > 1024 {
        return Err(Error::config(
            "load.size",
            format!("must be in 16..=1024, got {}", opts.size),
        ));
    }
    let samples = match spec {
        PHANTOMS => load_phantoms(opts),
        TUMORS2D => load_tumors2d(opts)?,
        s if s.starts_with("builtin:") => {
            return Err(Error::data(
                s,
                format!("unknown data set (builtin sets: {PHANTOMS}, {TUMORS2D})"),
            ))
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
            let raw = decode_image(img).map_err(|e| Error::data(format!("embedded {id}"), e))?;
            let (h, w, m) =
                decode_mask(mask).map_err(|e| Error::data(format!("embedded mask {id}"), e))?;
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
