//! The fuzz targets' inputs replayed in `cargo test` (issue 22): the committed seeds (fuzz/corpus/<target>/), every
//! crash reproducer the campaigns found (tests/data/fuzz/<target>/, with a note of what it was), and hand-made headers
//! that claim absurd sizes. Each goes through what its target runs (seglab_metrics::fuzzing): an error is fine, a
//! panic fails the test.
use std::path::{Path, PathBuf};

use seglab_metrics::fuzzing::{evaluate_two, read_every_way, temp_file};
use seglab_metrics::io;

const TARGETS: [(&str, &str); 5] = [
    ("read_png", "png"),
    ("read_nifti", "nii"),
    ("read_nifti_gz", "nii.gz"),
    ("read_npy", "npy"),
    ("evaluate_pair", ""),
];

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for dir in [
        root.join("../../fuzz/corpus").join(target),
        root.join("tests/data/fuzz").join(target),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            v.extend(
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.is_file() && !p.ends_with("README.md")),
            );
        }
    }
    v.sort();
    v
}

#[test]
fn every_committed_fuzz_input_is_read_without_a_panic() {
    let mut total = 0;
    for (target, ext) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no seeds for {target}");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            if target == "evaluate_pair" {
                evaluate_two(&data);
            } else {
                read_every_way(&temp_file(&format!("replay.{ext}"), &data));
            }
            total += 1;
        }
    }
    assert!(total >= 40, "{total} inputs");
}

fn npy(shape: &str, descr: &str, data_bytes: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((header.len() as u16).to_le_bytes());
    v.extend(header.as_bytes());
    v.extend(vec![0u8; data_bytes]);
    v
}

#[test]
fn headers_that_claim_absurd_sizes_are_refused_before_allocating() {
    // 10^12 voxels of float32 over 16 bytes; shapes whose products overflow 64 bits (wrap-around to 16 or 4 bytes).
    for (shape, descr) in [
        ("(1000000, 1000000)", "<f4"),
        ("(4, 4611686018427387905)", "<f4"),
        ("(16, 1152921504606846977)", "|u1"),
        ("(65536, 65536, 65536)", "|u1"),
    ] {
        let p = temp_file("absurd.npy", &npy(shape, descr, 16));
        let err = io::read(&p).unwrap_err().to_string();
        assert!(err.contains("absurd.npy"), "{shape}: {err}");
        read_every_way(&p);
    }
    // A NIfTI-1 header (348 bytes + 4 of extension flag) claiming 30000^3 voxels of float32 with no data.
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dims: [i16; 8] = [3, 30000, 30000, 30000, 1, 1, 1, 1];
    for (i, d) in dims.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&16i16.to_le_bytes()); // datatype FLOAT32
    h[72..74].copy_from_slice(&32i16.to_le_bytes()); // bitpix
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[344..348].copy_from_slice(b"n+1\0");
    let p = temp_file("absurd.nii", &h);
    assert!(io::read(&p).is_err());
    read_every_way(&p);
}
