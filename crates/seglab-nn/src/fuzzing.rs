//! What the training-loader fuzz target (`fuzz/fuzz_targets/load_folder.rs`) and its regression test
//! (`tests/fuzz_loader.rs`) run on one input: a data folder holding one fuzzed file, loaded as `seglab train --data
//! DIR` loads it (pairing, decoding, slicing volumes, resizing, normalising), then one augmented batch of it. An error
//! is the expected outcome for most inputs; a panic, an abort or an unbounded allocation is a bug.
use std::path::PathBuf;

use seglab_metrics::{io, Mask};

use crate::data::{load, make_batch, AugmentConfig, LoadOptions};
use crate::rng::Rng;

/// The formats a fuzzed file is written as, chosen by `data[0] % 4`.
const EXTENSIONS: [&str; 4] = ["png", "npy", "nii", "nii.gz"];

/// The input is a mode byte and one file. `data[0] % 4` picks the format; `(data[0] / 4) % 3` what the file is: the
/// image (beside a valid 24x24 PNG mask), the mask (beside a valid PNG image), or both (the same file as image and
/// mask, so that decodable volumes of any shape get past the pairing and through slicing and resizing).
pub fn load_fuzzed_folder(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[(mode % 4) as usize];
    let dir = folder();
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    for d in [&images, &masks] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("create the fuzz folder");
    }
    let fuzzed = |d: &PathBuf| {
        std::fs::write(d.join(format!("case.{ext}")), file).expect("write the fuzz input")
    };
    let valid = |d: &PathBuf| {
        let m: Vec<bool> = (0..24 * 24)
            .map(|i| (i / 24) % 7 < 3 && i % 24 > 5)
            .collect();
        io::write_png_mask(&d.join("case.png"), &Mask::from_vec(vec![24, 24], m))
            .expect("write the fuzz counterpart");
    };
    match (mode / 4) % 3 {
        0 => {
            fuzzed(&images);
            valid(&masks);
        }
        1 => {
            valid(&images);
            fuzzed(&masks);
        }
        _ => {
            fuzzed(&images);
            fuzzed(&masks);
        }
    }
    let opts = LoadOptions {
        size: 16,
        ..LoadOptions::default()
    };
    if let Ok(ds) = load(&dir.to_string_lossy(), &opts) {
        if !ds.samples.is_empty() {
            let idx: Vec<usize> = (0..ds.samples.len().min(4)).collect();
            let _ = make_batch(&ds, &idx, &AugmentConfig::default(), &mut Rng::new(1));
        }
    }
}

/// The data folder of this process and thread (tests run in parallel threads).
pub fn folder() -> PathBuf {
    std::env::temp_dir().join(
        format!(
            "seglab-fuzz-load-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], ""),
    )
}
