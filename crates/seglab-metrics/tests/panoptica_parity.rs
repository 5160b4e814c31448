//! Panoptic instance metrics against the PyPI package panoptica 2.1.7 on the generated cases of
//! `tests/data/panoptica` (written by `tools/panoptica_reference.py`, which pins the versions).
use std::path::{Path, PathBuf};

use seglab_metrics::instances::{instances, InstanceSettings};
use seglab_metrics::io;
use seglab_metrics::lesion::LesionSettings;
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/panoptica");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    v.sort();
    assert_eq!(v.len(), 7);
    v
}

/// The reference's value: `None` where panoptica gives NaN, infinity or no value (seglab's null).
fn value(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn close(ours: Option<f64>, theirs: Option<f64>, what: &str) {
    match (ours, theirs) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: ours {a}, panoptica {b}"
        ),
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

#[test]
fn every_case_matches_panoptica() {
    let mut runs = 0;
    let mut matched = 0;
    for dir in cases() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let spacing: Vec<f64> = expected["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let read = |f: &str| {
            io::read(&dir.join(f))
                .unwrap()
                .into_gt_mask(None)
                .unwrap()
                .with_spacing(spacing.clone())
        };
        let (gt, pred) = (read("gt.npy"), read("pred.npy"));
        for run in expected["runs"].as_array().unwrap() {
            let lesion = LesionSettings {
                connectivity: Some(run["connectivity"].as_u64().unwrap() as u32),
                min_lesion_size: 0,
            };
            let s = InstanceSettings {
                match_iou: run["matching_threshold"].as_f64().unwrap(),
            };
            let what = format!("{} {lesion:?} {s:?}", dir.display());
            let r = instances(&pred, &gt, &lesion, &s).unwrap();
            let v = &run["values"];
            assert_eq!(r.tp as f64, v["tp"].as_f64().unwrap(), "{what} tp");
            assert_eq!(r.fp as f64, v["fp"].as_f64().unwrap(), "{what} fp");
            assert_eq!(r.fn_ as f64, v["fn"].as_f64().unwrap(), "{what} fn");
            close(r.rq, value(&v["rq"]), &format!("{what} rq"));
            close(r.sq, value(&v["sq"]), &format!("{what} sq"));
            close(r.pq, value(&v["pq"]), &format!("{what} pq"));
            close(r.sq_dice, value(&v["sq_dsc"]), &format!("{what} sq_dsc"));
            close(r.pq_dice, value(&v["pq_dsc"]), &format!("{what} pq_dsc"));
            close(r.sq_hd95, value(&v["sq_hd95"]), &format!("{what} sq_hd95"));
            close(r.sq_assd, value(&v["sq_assd"]), &format!("{what} sq_assd"));
            runs += 1;
            matched += r.tp;
        }
    }
    assert_eq!(runs, 24);
    assert!(matched >= 30, "{matched}");
}
