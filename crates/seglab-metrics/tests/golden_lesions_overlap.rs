//! Parity with the golden cases (copied from shared/golden/metric_cases, see tests/data/PROVENANCE.md):
//! lesion counts and component sizes for both connectivities, and overlap metrics against MedPy.
use std::path::{Path, PathBuf};

use seglab_metrics::lesion::{lesion_metrics, LesionSettings};
use seglab_metrics::{io, Confusion, Mask};
use serde_json::Value;

fn cases() -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/metric_cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            let e =
                serde_json::from_str(&std::fs::read_to_string(p.join("expected.json")).unwrap())
                    .unwrap();
            (p, e)
        })
        .collect()
}

fn load(case: &Path, expected: &Value) -> (Mask, Mask) {
    let spacing: Vec<f64> = serde_json::from_value(expected["spacing_mm"].clone()).unwrap();
    let gt = io::read_gt_mask(&case.join("gt.npy"), None)
        .unwrap()
        .with_spacing(spacing.clone());
    let pred = io::read_gt_mask(&case.join("pred.npy"), None)
        .unwrap()
        .with_spacing(spacing);
    (pred, gt)
}

fn sorted_desc(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn sizes(v: &Value) -> Vec<usize> {
    sorted_desc(serde_json::from_value(v.clone()).unwrap())
}

#[test]
fn lesion_counts_match_for_both_connectivities() {
    let mut checked = 0;
    for (case, expected) in cases() {
        let (pred, gt) = load(&case, &expected);
        let blocks = expected["lesions"].as_object().unwrap();
        assert_eq!(blocks.len(), 2, "{case:?}");
        for (key, e) in blocks {
            let n: u32 = key.trim_end_matches("-connectivity").parse().unwrap();
            let r = lesion_metrics(
                &pred,
                &gt,
                &LesionSettings {
                    connectivity: Some(n),
                    min_lesion_size: 0,
                },
            )
            .unwrap();
            let ctx = format!("{case:?} {key}");
            assert_eq!(
                r.gt_lesions as u64,
                e["n_gt_components"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                r.pred_lesions as u64,
                e["n_pred_components"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                r.lesions_detected as u64,
                e["n_gt_hit_by_any_pred_voxel"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                r.lesions_missed as u64,
                e["n_gt_missed"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                r.false_positive_lesions as u64,
                e["n_pred_false_positive_components"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                (r.pred_lesions - r.false_positive_lesions) as u64,
                e["n_pred_overlapping_any_gt_voxel"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                sorted_desc(r.gt_sizes()),
                sizes(&e["gt_component_sizes"]),
                "{ctx}"
            );
            assert_eq!(
                sorted_desc(r.pred_sizes.clone()),
                sizes(&e["pred_component_sizes"]),
                "{ctx}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 32);
}

fn medpy(expected: &Value, name: &str) -> Option<f64> {
    let v = &expected["medpy"][name];
    (v["outcome"] == "value").then(|| v["value"].as_f64().unwrap())
}

#[test]
fn overlap_matches_medpy() {
    let mut compared = 0;
    for (case, expected) in cases() {
        let (pred, gt) = load(&case, &expected);
        let c = Confusion::from_masks(pred.data(), gt.data());
        let counts = &expected["counts"];
        assert_eq!(
            [c.tp, c.fp, c.fn_, c.tn],
            ["TP", "FP", "FN", "TN"].map(|k| counts[k].as_u64().unwrap()),
            "{case:?}"
        );
        let ours = [
            ("dc", c.dice()),
            ("jc", c.iou()),
            ("precision", c.precision()),
            ("recall", c.recall()),
            ("sensitivity", c.recall()),
            ("specificity", c.specificity()),
        ];
        for (name, value) in ours {
            match (value, medpy(&expected, name)) {
                (Some(a), Some(b)) => {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-12),
                        "{case:?} {name}: {a} vs medpy {b}"
                    );
                    compared += 1;
                }
                // Undefined (0/0) for us: only allowed where a mask is empty; the empty-mask policy decides there.
                (None, _) => assert!(
                    pred.is_empty() || gt.is_empty(),
                    "{case:?} {name} undefined"
                ),
                (Some(a), None) => panic!("{case:?} {name}: we give {a}, medpy gives no value"),
            }
        }
    }
    assert!(compared >= 70, "{compared}");
}

fn no_distances() -> seglab_metrics::EvalSettings {
    seglab_metrics::EvalSettings {
        distances: false,
        ..Default::default()
    }
}

#[test]
fn evaluate_applies_the_default_empty_policy_on_golden_cases() {
    for (case, expected) in cases() {
        let (pred, gt) = load(&case, &expected);
        let r = seglab_metrics::evaluate_masks("c", &pred, &gt, &no_distances()).unwrap();
        let m = &r.metrics;
        match (pred.is_empty(), gt.is_empty()) {
            (true, true) => {
                assert_eq!(
                    (m.dice, m.iou, m.precision, m.recall),
                    (Some(1.0), Some(1.0), Some(1.0), Some(1.0))
                );
            }
            (true, false) | (false, true) => {
                assert_eq!((m.dice, m.iou), (Some(0.0), Some(0.0)), "{case:?}");
                // Where MedPy gives a value we agree; where it gives NaN (0/0) the policy sets 0 and says so.
                for (ours, name) in [(m.precision, "precision"), (m.recall, "recall")] {
                    match medpy(&expected, name) {
                        Some(v) => assert_eq!(ours, Some(v), "{case:?} {name}"),
                        None => {
                            assert_eq!(ours, Some(0.0), "{case:?} {name}");
                            assert!(r.status.policy.iter().any(|k| k == name), "{case:?} {name}");
                        }
                    }
                }
            }
            (false, false) => {
                let b = medpy(&expected, "dc").unwrap();
                assert!(
                    (m.dice.unwrap() - b).abs() <= 1e-6 * b.max(1e-12),
                    "{case:?}"
                );
                assert!(
                    r.status.policy.is_empty(),
                    "{case:?}: {:?}",
                    r.status.policy
                );
            }
        }
        // Lesion counts with the default (full) connectivity equal the 8/26 block.
        let key = if gt.ndim() == 2 {
            "8-connectivity"
        } else {
            "26-connectivity"
        };
        assert_eq!(
            m.gt_lesions,
            expected["lesions"][key]["n_gt_components"].as_f64(),
            "{case:?}"
        );
    }
}

/// `evaluate_masks` wires the distances through (their own parity is in tests/distance_parity.rs).
#[test]
fn evaluate_with_distances_on_golden_cases() {
    for (case, expected) in cases() {
        let (pred, gt) = load(&case, &expected);
        let r = seglab_metrics::evaluate_masks("c", &pred, &gt, &Default::default()).unwrap();
        if !pred.is_empty() && !gt.is_empty() {
            let hd = expected["medpy"]["hd"]["value"].as_f64().unwrap();
            assert!(
                (r.metrics.hd.unwrap() - hd).abs() <= 1e-6 + 1e-4 * hd,
                "{case:?}"
            );
            assert_eq!(r.status.distances, "computed");
        }
    }
}
