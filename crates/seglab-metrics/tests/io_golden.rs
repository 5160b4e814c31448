//! The golden cases' files, read through every reader, must agree: PNG vs NPY (2D), NIfTI vs NPY (3D),
//! with the counts and spacing stated in expected.json.
use std::path::{Path, PathBuf};

use seglab_metrics::io;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metric_cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn every_format_gives_the_same_mask_and_spacing() {
    let cases = cases();
    assert!(cases.len() >= 16);
    for case in cases {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
                .unwrap();
        let shape: Vec<usize> = serde_json::from_value(expected["shape"].clone()).unwrap();
        let spacing: Vec<f64> = serde_json::from_value(expected["spacing_mm"].clone()).unwrap();
        let ext = if shape.len() == 2 { "png" } else { "nii.gz" };
        for (name, count_key) in [("gt", "gt_voxels"), ("pred", "pred_voxels")] {
            let from_npy = io::read_gt_mask(&case.join(format!("{name}.npy")), None).unwrap();
            let from_img = io::read_gt_mask(&case.join(format!("{name}.{ext}")), None).unwrap();
            assert_eq!(from_npy.shape(), &shape[..], "{case:?}");
            assert_eq!(from_img.shape(), &shape[..], "{case:?} {ext}");
            assert!(
                from_npy.data() == from_img.data(),
                "{case:?}: {name}.npy and {name}.{ext} differ"
            );
            assert_eq!(
                from_npy.count() as u64,
                expected["counts"][count_key].as_u64().unwrap(),
                "{case:?}"
            );
            if ext == "nii.gz" {
                for (a, b) in from_img.spacing().iter().zip(&spacing) {
                    assert!(
                        (a - b).abs() < 1e-6,
                        "{case:?}: spacing {:?} vs {spacing:?}",
                        from_img.spacing()
                    );
                }
            }
            // Predictions stored as 0/255 PNG or 0/1 arrays become probabilities 0/1.
            let prob = io::read_prob_map(&case.join(format!("{name}.{ext}"))).unwrap();
            assert!(
                prob.threshold(0.5).data() == from_npy.data(),
                "{case:?}: {name} as probabilities"
            );
        }
    }
}

#[test]
fn truncated_golden_files_are_errors_naming_the_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metric_cases");
    let dir = tempfile::tempdir().unwrap();
    for src in [
        "identical_3d/gt.nii.gz",
        "identical_2d/gt.png",
        "identical_3d/gt.npy",
    ] {
        let bytes = std::fs::read(root.join(src)).unwrap();
        let name = format!("cut_{}", src.replace('/', "_"));
        let p = dir.path().join(&name);
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = io::read(&p).unwrap_err().to_string();
        assert!(
            e.contains(&name) && (e.contains("truncated") || e.contains("corrupt")),
            "{e}"
        );
    }
}

/// `evaluate` reads column-major files in their storage order (masks over the reversed axes, spacing reversed with
/// them): every metric and the per-lesion list must equal those of the row-major masks.
#[test]
fn storage_order_does_not_change_any_metric() {
    use seglab_metrics::evaluate::{evaluate_masks, EvalSettings};
    use seglab_metrics::io::NiftiData;
    let dir = tempfile::tempdir().unwrap();
    // Anisotropic, non-cubic, several lesions of different sizes: axis order matters for every geometric step.
    let shape = [23usize, 17, 9];
    let spacing = [0.8, 1.3, 3.0];
    let n: usize = shape.iter().product();
    let blobs = |seed: u64| -> Vec<bool> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64
        };
        let centres: Vec<([f64; 3], f64)> = (0..5)
            .map(|_| {
                (
                    [next() * 23.0, next() * 17.0, next() * 9.0],
                    1.0 + next() * 3.5,
                )
            })
            .collect();
        (0..n)
            .map(|i| {
                let (a, b, c) = (i / (17 * 9), (i / 9) % 17, i % 9);
                centres.iter().any(|(ctr, r)| {
                    let d = [
                        a as f64 - ctr[0],
                        (b as f64 - ctr[1]) * 0.7,
                        (c as f64 - ctr[2]) * 1.6,
                    ];
                    d.iter().map(|x| x * x).sum::<f64>() <= r * r
                })
            })
            .collect()
    };
    let (g, p) = (blobs(7), blobs(8));
    assert!(g.iter().any(|&v| v) && p.iter().any(|&v| v));
    let mut files = vec![];
    for (name, data) in [("gt.nii.gz", &g), ("pred.nii.gz", &p)] {
        let path = dir.path().join(name);
        io::write_nifti(&path, &shape, &spacing, NiftiData::Mask(data), None).unwrap();
        files.push(path);
    }
    // The golden 3D cases too (NIfTI and Fortran-free NPY twins are checked above).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metric_cases");
    let mut pairs = vec![(files[1].clone(), files[0].clone())];
    for case in [
        "lesions_3d_96x96x48_n1",
        "one_voxel_shift_3d_z",
        "single_voxel_3d",
    ] {
        pairs.push((
            root.join(case).join("pred.nii.gz"),
            root.join(case).join("gt.nii.gz"),
        ));
    }
    for connectivity in [6, 18, 26] {
        let mut settings = EvalSettings::default();
        settings.lesion.connectivity = Some(connectivity);
        for (pred, gt) in &pairs {
            let native = (io::read_native(pred).unwrap(), io::read_native(gt).unwrap());
            assert!(native.0.column_major && native.1.column_major);
            assert_eq!(
                native
                    .1
                    .storage_shape()
                    .iter()
                    .rev()
                    .copied()
                    .collect::<Vec<_>>(),
                native.1.shape
            );
            let row = (io::read(pred).unwrap(), io::read(gt).unwrap());
            assert!(!row.0.column_major);
            let masks = |r: &(io::RawArray, io::RawArray)| {
                (
                    r.0.to_pred_mask(0.5).unwrap(),
                    r.1.to_gt_mask(None).unwrap(),
                )
            };
            let (pn, gn) = masks(&native);
            let (pr, gr) = masks(&row);
            assert_eq!(gn.shape(), &native.1.storage_shape()[..]);
            let a = evaluate_masks("c", &pn, &gn, &settings).unwrap();
            let b = evaluate_masks("c", &pr, &gr, &settings).unwrap();
            assert_eq!(a.lesions, b.lesions, "{gt:?} connectivity {connectivity}");
            assert_eq!(a.status, b.status);
            for ((name, x), (_, y)) in a.metrics.entries().into_iter().zip(b.metrics.entries()) {
                match (x, y) {
                    (Some(x), Some(y)) => assert!(
                        (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                        "{gt:?} {name}: {x} vs {y}"
                    ),
                    (x, y) => assert_eq!(x, y, "{gt:?} {name}"),
                }
            }
        }
    }
}
