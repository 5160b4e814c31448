//! What the fuzz targets (`fuzz/`) and their regression test (`tests/fuzz_regressions.rs`) run on one input: every
//! reader and conversion a file of that format goes through in `evaluate` and in training. An error is the expected
//! outcome for most inputs; a panic, an abort or an unbounded allocation is a bug.
use std::path::{Path, PathBuf};

use crate::evaluate::{evaluate_masks, EvalSettings};
use crate::io;

/// libFuzzer's panic hook aborts on every panic, also on those a reader catches on purpose
/// ([`crate::panic::catch_quietly`]); the fuzz targets install this one, which aborts on the others only, so a
/// campaign reports what would reach a user.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !crate::panic::is_quiet() {
                fuzzer_hook(info);
            }
        }));
    });
}

/// Writes `data` to a per-process temporary file named `name` (the extension picks the reader) and returns its path.
pub fn temp_file(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seglab-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write the fuzz input");
    p
}

/// Reads `path` as every role: raw array, ground-truth mask (with and without a threshold), probability map,
/// prediction mask, intensities, and the row-major form.
pub fn read_every_way(path: &Path) {
    if let Ok(raw) = io::read_native(path) {
        let _ = raw.to_gt_mask(None);
        let _ = raw.to_gt_mask(Some(0.5));
        let _ = raw.to_prob_map();
        let _ = raw.to_pred_mask(0.5);
        let _ = raw.to_intensities();
        let _ = raw.into_row_major();
    }
    let _ = io::read(path);
}

/// The input (format byte, split byte, then two files) split in two files of one format, scored as a pair with every metric (distances and lesions included).
pub fn evaluate_two(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let ext = match data[0] % 3 {
        0 => "png",
        1 => "npy",
        _ => "nii",
    };
    // Byte 1 says where the first file ends: data[1] / 256 of the rest.
    let body = &data[2..];
    let cut = data[1] as usize * body.len() / 256;
    let (a, b) = body.split_at(cut);
    let (pa, pb) = (
        temp_file(&format!("pred.{ext}"), a),
        temp_file(&format!("gt.{ext}"), b),
    );
    let (Ok(pred), Ok(gt)) = (io::read(&pa), io::read(&pb)) else {
        return;
    };
    let (Ok(pred), Ok(gt)) = (pred.into_pred_mask(0.5), gt.into_gt_mask(None)) else {
        return;
    };
    let settings = EvalSettings::default();
    let _ = evaluate_masks("fuzz", &pred, &gt, &settings);
}
