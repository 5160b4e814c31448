//! `seglab synth DIR`: write the synthetic phantom set (the generator behind `builtin:phantoms`) as
//! `DIR/images/phantom_NNNN.png` (8-bit gray) and `DIR/masks/phantom_NNNN.png` (0/255).
use std::path::PathBuf;

use anyhow::{bail, Context};
use seglab_nn::synth;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (must not exist or be empty).
    pub dir: PathBuf,
    #[arg(long, default_value_t = 240)]
    pub count: usize,
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn png(size: usize, data: Vec<u8>) -> image::GrayImage {
    image::GrayImage::from_raw(size as u32, size as u32, data).expect("size x size pixels")
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.size < 8 || a.size > 4096 {
        bail!("--size must be in 8..=4096, got {}", a.size);
    }
    if a.dir.exists()
        && std::fs::read_dir(&a.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{}: exists and is not empty", a.dir.display());
    }
    // Built in a sibling temporary folder and renamed: an interrupted run leaves no half-written set.
    let parent = a
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or(".".into());
    std::fs::create_dir_all(&parent).with_context(|| format!("{}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp{}",
        a.dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("synth"),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(tmp.join("images"))?;
        std::fs::create_dir_all(tmp.join("masks"))?;
        for i in 0..a.count {
            let p = synth::phantom(a.seed, i, a.size);
            let name = format!("phantom_{i:04}.png");
            png(a.size, p.image).save(tmp.join("images").join(&name))?;
            png(a.size, p.mask.iter().map(|&m| m * 255).collect())
                .save(tmp.join("masks").join(&name))?;
        }
        if a.dir.exists() {
            std::fs::remove_dir(&a.dir)?;
        }
        std::fs::rename(&tmp, &a.dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("{}", a.dir.display())));
    }
    eprintln!(
        "wrote {} phantoms ({}x{}, seed {}) to {}",
        a.count,
        a.size,
        a.size,
        a.seed,
        a.dir.display()
    );
    Ok(())
}
