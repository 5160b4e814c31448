//! `seglab predict`: segment images with a trained run. Masks are written in the input's format and geometry
//! (PNG at the input's size, NIfTI with the input's header, NPY), named like the input, so
//! `seglab evaluate --pred OUT --gt ...` scores them directly. With `--save-probabilities` the probability maps go to
//! `OUT/probabilities/` (float32: `.nii.gz` for NIfTI input, `.npy` otherwise). 3D volumes are predicted slice by
//! slice along their last axis, as they were trained.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use seglab_metrics::io::{self, Format, NiftiData, NpyData};
use seglab_metrics::{binarize, Mask};
use seglab_nn::data::{self, RawImage};
use seglab_nn::train;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder written by `seglab train`.
    #[arg(long)]
    pub model: PathBuf,
    /// An image file (PNG, NIfTI, NPY), or a folder of them (or a data folder with images/ or imagesTr/).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: super::args::DeviceArgs,
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    #[arg(long)]
    pub save_probabilities: bool,
    /// Use the last checkpoint instead of the best one.
    #[arg(long)]
    pub last: bool,
    /// Mirrored test-time augmentation: the mean of the predictions for the image and its three mirror images
    /// (4x the compute). On by default for a model trained with `--tta` (its checkpoint was chosen that way).
    #[arg(long)]
    pub tta: bool,
}

fn inputs(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        bail!("{}: no such file or folder", input.display());
    }
    let dir = ["images", "imagesTr"]
        .iter()
        .map(|d| input.join(d))
        .find(|d| d.is_dir())
        .unwrap_or(input.to_path_buf());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && io::image_stem(p).is_some())
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{}: no images (.png, .nii, .nii.gz, .npy)", dir.display());
    }
    Ok(v)
}

struct Input {
    stem: String,
    raw: io::RawArray,
    image: io::Intensities,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let device = a.device.device()?;
    if !(0.0..=1.0).contains(&a.threshold) {
        bail!("--threshold must be in [0, 1], got {}", a.threshold);
    }
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{}: exists and is not empty", a.out.display());
    }
    let model = train::load_model(&a.model, !a.last, &device)?;
    let cfg = &model.config;
    // Decode and check every input before writing anything.
    let mut items = Vec::new();
    for path in inputs(&a.input)? {
        let raw = io::read(&path)?;
        let image = raw.to_intensities();
        if image.channels != cfg.model.in_channels {
            bail!(
                "{}: {} channel(s) but the model takes {}",
                path.display(),
                image.channels,
                cfg.model.in_channels
            );
        }
        let stem = io::image_stem(&path).unwrap_or_default();
        // nnU-Net inputs are <case>_0000: the prediction is named <case>, like its label.
        let stem = match stem.strip_suffix("_0000") {
            Some(c) if raw.format == Format::Nifti => c.to_string(),
            _ => stem,
        };
        items.push(Input { stem, raw, image });
    }

    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or(".".into());
    std::fs::create_dir_all(&parent).with_context(|| format!("{}", parent.display()))?;
    let name = a.out.file_name().and_then(|n| n.to_str()).unwrap_or("pred");
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        if a.save_probabilities {
            std::fs::create_dir_all(tmp.join("probabilities"))?;
        }
        for item in &items {
            predict_one(&model, item, &a, &tmp)?;
        }
        if a.out.exists() {
            std::fs::remove_dir(&a.out)?;
        }
        std::fs::rename(&tmp, &a.out)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("{}", a.out.display())));
    }
    eprintln!("wrote {} prediction(s) to {}", items.len(), a.out.display());
    Ok(())
}

fn predict_one(
    model: &train::TrainedModel,
    item: &Input,
    a: &Args,
    tmp: &Path,
) -> anyhow::Result<()> {
    let cfg = &model.config;
    let size = cfg.load.size;
    let img = &item.image;
    let n: usize = img.shape.iter().product();
    // Per channel, its 2D slices; then per slice, the preprocessed network input.
    let per_channel: Vec<Vec<(usize, usize, Vec<f32>)>> = (0..img.channels)
        .map(|c| data::slices(&img.shape, &img.data[c * n..(c + 1) * n]))
        .collect();
    let n_slices = per_channel[0].len();
    let (h, w) = (per_channel[0][0].0, per_channel[0][0].1);
    let inputs: Vec<Vec<f32>> = (0..n_slices)
        .map(|k| {
            let mut d = Vec::with_capacity(img.channels * h * w);
            for ch in &per_channel {
                d.extend_from_slice(&ch[k].2);
            }
            data::preprocess(
                &RawImage {
                    channels: img.channels,
                    height: h,
                    width: w,
                    data: d,
                },
                &cfg.load,
            )
        })
        .collect();
    // Back to the input's geometry: each probability map is resized, then thresholded.
    let planes: Vec<Vec<f32>> = model
        .predict(&inputs, a.tta || cfg.tta)
        .iter()
        .map(|p| data::resize_plane(p, size, size, h, w))
        .collect();
    let probs = if img.shape.len() == 3 {
        data::unslice(h, w, &planes)
    } else {
        planes.into_iter().next().unwrap()
    };
    let mask = Mask::new(
        img.shape.clone(),
        img.spacing.clone(),
        probs.iter().map(|&p| binarize(p, a.threshold)).collect(),
    );
    let prob_dir = tmp.join("probabilities");
    match item.raw.format {
        Format::Png => {
            io::write_png_mask(&tmp.join(format!("{}.png", item.stem)), &mask)?;
            if a.save_probabilities {
                io::write_npy(
                    &prob_dir.join(format!("{}.npy", item.stem)),
                    &img.shape,
                    NpyData::F32(&probs),
                )?;
            }
        }
        Format::Nifti => {
            let header = item.raw.nifti_header.as_deref();
            let out = tmp.join(format!("{}.nii.gz", item.stem));
            io::write_nifti(
                &out,
                &img.shape,
                &img.spacing,
                NiftiData::Mask(mask.data()),
                header,
            )?;
            if a.save_probabilities {
                let out = prob_dir.join(format!("{}.nii.gz", item.stem));
                io::write_nifti(
                    &out,
                    &img.shape,
                    &img.spacing,
                    NiftiData::F32(&probs),
                    header,
                )?;
            }
        }
        Format::Npy => {
            let m: Vec<u8> = mask.data().iter().map(|&b| b as u8).collect();
            io::write_npy(
                &tmp.join(format!("{}.npy", item.stem)),
                &img.shape,
                NpyData::U8(&m),
            )?;
            if a.save_probabilities {
                io::write_npy(
                    &prob_dir.join(format!("{}.npy", item.stem)),
                    &img.shape,
                    NpyData::F32(&probs),
                )?;
            }
        }
    }
    Ok(())
}
