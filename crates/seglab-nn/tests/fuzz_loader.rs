//! The training-loader fuzz target's inputs replayed in `cargo test` (issue 22): the committed seeds
//! (fuzz/corpus/load_folder/) and every crash reproducer its campaigns found (tests/data/fuzz/load_folder/, with a
//! note of what it was), each through `seglab_nn::fuzzing::load_fuzzed_folder`: an error is fine, a panic fails.
use std::path::Path;

use seglab_nn::data::{load, LoadOptions};

#[test]
fn every_committed_loader_fuzz_input_loads_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("../../fuzz/corpus/load_folder"),
        root.join("tests/data/fuzz/load_folder"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.is_file() && !p.ends_with("README.md")),
            );
        }
    }
    files.sort();
    assert!(files.len() >= 12, "{} loader seeds", files.len());
    for f in &files {
        seglab_nn::fuzzing::load_fuzzed_folder(&std::fs::read(f).unwrap());
    }
}

/// The seeds exercise the loader, not only its errors: the valid ones (a PNG image beside its mask, a volume
/// used as image and mask) load into samples.
#[test]
fn valid_seeds_reach_the_samples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/load_folder");
    let dir = seglab_nn::fuzzing::folder();
    let mut loaded = 0;
    for name in [
        "png_both_e229c8ca89a7",
        "npy_both_376180421233",
        "nifti_both_1acd1cfa6395",
    ] {
        seglab_nn::fuzzing::load_fuzzed_folder(&std::fs::read(root.join(name)).unwrap());
        let opts = LoadOptions {
            size: 16,
            ..LoadOptions::default()
        };
        match load(&dir.to_string_lossy(), &opts) {
            Ok(ds) => loaded += !ds.samples.is_empty() as usize,
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
    assert_eq!(loaded, 3, "seeds that loaded into samples");
}
