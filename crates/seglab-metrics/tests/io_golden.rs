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
