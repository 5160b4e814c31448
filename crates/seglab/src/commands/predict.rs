//! `seglab predict`: segment images with a trained run. Masks are written in the input's format at the input's
//! size (`OUT/<id>.png`, 0/255), so `seglab evaluate --pred OUT --gt ...` scores them directly; with
//! `--save-probabilities` the probability maps go to `OUT/probabilities/<id>.npy` (float32, same size).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use seglab_metrics::binarize;
use seglab_nn::data::{self, RawImage};
use seglab_nn::train;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run folder written by `seglab train`.
    #[arg(long)]
    pub model: PathBuf,
    /// A PNG image, or a folder of PNG images (or a data folder with images/).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    #[arg(long)]
    pub save_probabilities: bool,
    /// Use the last checkpoint instead of the best one.
    #[arg(long)]
    pub last: bool,
}

fn inputs(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        bail!("{}: no such file or folder", input.display());
    }
    let dir = if input.join("images").is_dir() {
        input.join("images")
    } else {
        input.to_path_buf()
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{}: no PNG images", dir.display());
    }
    Ok(v)
}

pub fn run(a: Args) -> anyhow::Result<()> {
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
    let model = train::load_model(&a.model, !a.last)?;
    let cfg = &model.config;
    let files = inputs(&a.input)?;
    // Decode and check every input before writing anything.
    let mut raws: Vec<(String, RawImage)> = Vec::with_capacity(files.len());
    for f in &files {
        let raw = data::read_image(f)?;
        if raw.channels != cfg.model.in_channels {
            bail!(
                "{}: {} channel(s) but the model takes {}",
                f.display(),
                raw.channels,
                cfg.model.in_channels
            );
        }
        let id = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image")
            .to_string();
        raws.push((id, raw));
    }
    let size = cfg.load.size;
    let pre: Vec<Vec<f32>> = raws
        .iter()
        .map(|(_, r)| data::preprocess(r, size, cfg.load.window))
        .collect();
    let probs = model.predict(&pre);

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
        for ((id, raw), p) in raws.iter().zip(&probs) {
            // Back to the input's geometry: the probability map is resized, then thresholded.
            let full = data::resize_plane(p, size, size, raw.height, raw.width);
            let mask: Vec<u8> = full
                .iter()
                .map(|&v| if binarize(v, a.threshold) { 255 } else { 0 })
                .collect();
            image::GrayImage::from_raw(raw.width as u32, raw.height as u32, mask)
                .expect("mask matches its size")
                .save(tmp.join(format!("{id}.png")))?;
            if a.save_probabilities {
                let arr = ndarray::Array2::from_shape_vec((raw.height, raw.width), full)?;
                ndarray_npy::write_npy(tmp.join("probabilities").join(format!("{id}.npy")), &arr)?;
            }
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
    eprintln!("wrote {} mask(s) to {}", raws.len(), a.out.display());
    Ok(())
}
