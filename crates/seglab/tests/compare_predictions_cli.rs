//! `seglab compare --predictions`: end to end on two seglab-trained models (numbers checked against `seglab
//! evaluate` on the same files), constructed predictions (a copy, a degraded model, 3D volumes, a validation split)
//! and the bad-input contract (exit 2, one line, no report).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seglab_metrics::io::{write_npy, NpyData};
use serde_json::Value;

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(args)
        .output()
        .expect("run seglab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small 2D lesion (a disc) per case, `n` cases of `side x side`, radius varying with the case.
fn disc(side: usize, case: usize) -> Vec<bool> {
    let (c, r) = (side as f64 / 2.0, 3.0 + (case % 5) as f64);
    (0..side * side)
        .map(|i| {
            let (y, x) = ((i / side) as f64, (i % side) as f64);
            (y - c).powi(2) + (x - c - (case % 3) as f64).powi(2) <= r * r
        })
        .collect()
}

/// Ground truth and three models as NPY probability maps: `base` (the truth blurred into probabilities), `copy`
/// (the same files' values) and `worse` (every case loses lesion probability at its border).
fn constructed(dir: &Path, n: usize, side: usize) -> (PathBuf, [PathBuf; 3]) {
    let gt = dir.join("gt");
    let models = ["base", "copy", "worse"].map(|m| dir.join(m));
    for d in std::iter::once(&gt).chain(&models) {
        std::fs::create_dir_all(d).unwrap();
    }
    for k in 0..n {
        let t = disc(side, k);
        let name = format!("case{k:02}.npy");
        write_npy(&gt.join(&name), &[side, side], NpyData::Bool(&t)).unwrap();
        let p: Vec<f32> = (0..side * side)
            .map(|i| {
                let near = |d: i64| {
                    let (y, x) = ((i / side) as i64, (i % side) as i64 + d);
                    x >= 0 && (x as usize) < side && t[y as usize * side + x as usize]
                };
                let v = if t[i] { 0.9 } else { 0.05 };
                // Border pixels of the lesion are less certain, a little more so per case.
                if t[i] && !(near(-1) && near(1)) {
                    0.6 + 0.01 * (k % 7) as f32
                } else {
                    v
                }
            })
            .collect();
        write_npy(&models[0].join(&name), &[side, side], NpyData::F32(&p)).unwrap();
        write_npy(&models[1].join(&name), &[side, side], NpyData::F32(&p)).unwrap();
        // worse: the border falls below 0.5, so every case loses its border pixels at 0.5.
        let w: Vec<f32> = p
            .iter()
            .map(|&v| if (0.55..0.7).contains(&v) { 0.3 } else { v })
            .collect();
        write_npy(&models[2].join(&name), &[side, side], NpyData::F32(&w)).unwrap();
    }
    (gt, models)
}

fn compare(gt: &Path, models: &[(&str, &Path)], extra: &[&str], out: &Path) -> Output {
    let mut args: Vec<String> = vec!["compare".into()];
    for (name, dir) in models {
        args.push("--predictions".into());
        args.push(format!("{name}={}", dir.display()));
    }
    args.extend([
        "--gt".to_string(),
        s(gt).to_string(),
        "--out".into(),
        s(out).to_string(),
    ]);
    args.extend(extra.iter().map(|x| x.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    seglab(&refs)
}

#[test]
fn a_copy_is_no_evidence_and_a_degraded_model_is_worse() {
    let tmp = tempfile::tempdir().unwrap();
    let (gt, m) = constructed(tmp.path(), 12, 32);
    let out = tmp.path().join("report");
    let o = compare(
        &gt,
        &[("base", &m[0]), ("copy", &m[1]), ("worse", &m[2])],
        &["--metrics", "dice,hd95,nsd"],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sum = json(&out.join("summary.json"));
    assert_eq!(sum["models"]["copy"], s(&m[1]));
    assert_eq!(sum["answer"]["copy"], "no evidence");
    assert_eq!(sum["answer"]["worse"], "worse");
    let comps = sum["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 6, "3 metrics x 2 models");
    let dice = |v: &str| {
        comps
            .iter()
            .find(|c| c["metric"] == "dice" && c["variant"] == v)
            .unwrap()
            .clone()
    };
    assert_eq!(dice("copy")["difference"], 0.0);
    assert_eq!(dice("copy")["ci95"], serde_json::json!([0.0, 0.0]));
    let w = dice("worse");
    assert!(w["ci95"][1].as_f64().unwrap() < 0.0, "{w}");
    assert_eq!(
        (
            w["unit"].as_str(),
            w["n_cases"].as_u64(),
            w["n_seeds"].as_u64()
        ),
        (Some("case"), Some(12), Some(1))
    );
    assert!(w["p_holm"].as_f64().unwrap() < 0.05);
    // Holm over the two models of a metric: the copy's p is 1, the adjusted p of the other is at most twice its own.
    let (p, q) = (
        w["p_value"].as_f64().unwrap(),
        w["p_holm"].as_f64().unwrap(),
    );
    assert!(
        (q - (2.0 * p).min(1.0)).abs() < 1e-12 || (q - p).abs() < 1e-12,
        "{p} {q}"
    );
    assert!(out.join("index.html").is_file());
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("id=\"comparison-table\"") && html.contains("id=\"answer-table\""));
}

#[test]
fn volumes_and_a_validation_split_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (side, depth) = (16, 6);
    let gt = tmp.path().join("gt");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&gt, &a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    for k in 0..8 {
        let t: Vec<bool> = (0..depth)
            .flat_map(|z| {
                if (1..5).contains(&z) {
                    disc(side, k)
                } else {
                    vec![false; side * side]
                }
            })
            .collect();
        let name = format!("vol{k}.npy");
        write_npy(&gt.join(&name), &[depth, side, side], NpyData::Bool(&t)).unwrap();
        // a: confident; b: lesion probabilities of 0.4, so 0.5 misses everything and a lower threshold recovers it.
        let pa: Vec<f32> = t.iter().map(|&x| if x { 0.9 } else { 0.1 }).collect();
        let pb: Vec<f32> = t.iter().map(|&x| if x { 0.4 } else { 0.1 }).collect();
        write_npy(&a.join(&name), &[depth, side, side], NpyData::F32(&pa)).unwrap();
        write_npy(&b.join(&name), &[depth, side, side], NpyData::F32(&pb)).unwrap();
    }
    let val = tmp.path().join("val.txt");
    std::fs::write(&val, "# chosen here\nvol0\nvol1\n").unwrap();
    let out = tmp.path().join("r");
    let o = compare(
        &gt,
        &[("a", &a), ("b", &b)],
        &["--val-cases", s(&val), "--metrics", "dice"],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sum = json(&out.join("summary.json"));
    assert_eq!(sum["split"], serde_json::json!({"val": 2, "test": 6}));
    assert_eq!(sum["val_cases"], serde_json::json!(["vol0", "vol1"]));
    // b's threshold, chosen on vol0 and vol1, is below 0.4: on the other six volumes it is then as good as a.
    let tb = sum["per_model"]["b"]["threshold"].as_f64().unwrap();
    assert!(tb <= 0.4 && tb > 0.1, "{tb}");
    assert_eq!(sum["per_model"]["b"]["threshold_from_validation"], true);
    let c = &sum["comparisons"][0];
    assert_eq!(c["n_cases"], 6);
    assert_eq!(c["difference"], 0.0);
    assert_eq!(sum["answer"]["b"], "no evidence");
    // Without --val-cases, 0.5 for both: b finds nothing.
    let out2 = tmp.path().join("r2");
    let o = compare(&gt, &[("a", &a), ("b", &b)], &["--metrics", "dice"], &out2);
    assert!(o.status.success(), "{}", stderr(&o));
    let sum = json(&out2.join("summary.json"));
    assert_eq!(sum["comparisons"][0]["difference"], -1.0);
    assert_eq!(sum["answer"]["b"], "worse");
}

#[test]
fn two_seglab_models_match_seglab_evaluate_on_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = seglab(&[
        "synth",
        s(&data),
        "--count",
        "16",
        "--size",
        "32",
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut preds = Vec::new();
    for (name, extra) in [("soft", vec![]), ("ste", vec!["--threshold-mode", "ste"])] {
        let run = tmp.path().join(format!("run-{name}"));
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--epochs",
            "2",
            "--size",
            "32",
            "--depth",
            "2",
            "--base-width",
            "4",
            "--batch-size",
            "4",
            "--quiet",
        ];
        args.extend(extra);
        let o = seglab(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let pred = tmp.path().join(format!("pred-{name}"));
        let o = seglab(&[
            "predict",
            "--model",
            s(&run),
            "--input",
            s(&data.join("images")),
            "--out",
            s(&pred),
            "--save-probabilities",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        preds.push((name, pred.join("probabilities")));
    }
    let out = tmp.path().join("report");
    let masks = data.join("masks");
    let o = compare(
        &masks,
        &[("soft", &preds[0].1), ("ste", &preds[1].1)],
        &[
            "--images",
            s(&data.join("images")),
            "--metrics",
            "dice,hd95,lesion_f1",
        ],
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sum = json(&out.join("summary.json"));
    // Each model's mean Dice, HD95 and lesion F1 are those `seglab evaluate` reports on the same files.
    let mut per_case = Vec::new();
    for (name, dir) in &preds {
        let ev = tmp.path().join(format!("eval-{name}.json"));
        let o = seglab(&[
            "evaluate",
            "--pred",
            s(dir),
            "--gt",
            s(&masks),
            "--out",
            s(&ev),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ev = json(&ev);
        for m in ["dice", "hd95", "lesion_f1"] {
            assert_eq!(
                sum["per_model"][name]["summary"][m]["mean"], ev["summary"][m]["mean"],
                "{name} {m}"
            );
        }
        per_case.push(
            ev["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["metrics"]["dice"].as_f64().unwrap())
                .collect::<Vec<_>>(),
        );
    }
    // The case-level difference is the mean of evaluate's per-case differences.
    let d: f64 = per_case[1]
        .iter()
        .zip(&per_case[0])
        .map(|(a, b)| a - b)
        .sum::<f64>()
        / per_case[0].len() as f64;
    let c = &sum["comparisons"][0];
    assert_eq!(
        (c["metric"].as_str(), c["variant"].as_str()),
        (Some("dice"), Some("ste"))
    );
    assert!(
        (c["difference"].as_f64().unwrap() - d).abs() < 1e-12,
        "{c} vs {d}"
    );
    assert!(out.join("index.html").is_file());
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_no_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (gt, m) = constructed(tmp.path(), 6, 16);
    let out = tmp.path().join("report");
    let check = |o: Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err} lacks {needle}");
        assert!(!out.exists(), "a report was written for bad input");
    };
    // A case missing from one model: listed per model.
    std::fs::remove_file(m[2].join("case03.npy")).unwrap();
    std::fs::remove_file(m[2].join("case04.npy")).unwrap();
    check(
        compare(&gt, &[("base", &m[0]), ("worse", &m[2])], &[], &out),
        "worse (",
    );
    let o = compare(&gt, &[("base", &m[0]), ("worse", &m[2])], &[], &out);
    assert!(
        stderr(&o).contains("lacks case03, case04"),
        "{}",
        stderr(&o)
    );
    // Another shape for one case.
    write_npy(
        &m[1].join("case01.npy"),
        &[8, 32],
        NpyData::F32(&vec![0.1; 256]),
    )
    .unwrap();
    check(
        compare(&gt, &[("base", &m[0]), ("copy", &m[1])], &[], &out),
        "case01.npy",
    );
    // NaN in a probability map.
    let mut nan = vec![0.1f32; 256];
    nan[7] = f32::NAN;
    write_npy(&m[1].join("case01.npy"), &[16, 16], NpyData::F32(&nan)).unwrap();
    check(
        compare(&gt, &[("base", &m[0]), ("copy", &m[1])], &[], &out),
        "non-finite",
    );
    // A baseline that is not a model, a name given twice, an unknown validation case.
    check(
        compare(
            &gt,
            &[("base", &m[0]), ("copy", &m[0])],
            &["--baseline", "soft"],
            &out,
        ),
        "--baseline 'soft' is not one of the models",
    );
    check(
        compare(&gt, &[("base", &m[0]), ("base", &m[0])], &[], &out),
        "the model name 'base' is given twice",
    );
    let val = tmp.path().join("val.txt");
    std::fs::write(&val, "case00\nnope\n").unwrap();
    check(
        compare(
            &gt,
            &[("base", &m[0]), ("copy", &m[0])],
            &["--val-cases", s(&val)],
            &out,
        ),
        "case 'nope' is not in the ground-truth folder",
    );
    // Training options do not mix with --predictions.
    check(
        compare(
            &gt,
            &[("base", &m[0]), ("copy", &m[0])],
            &["--epochs", "3"],
            &out,
        ),
        "--epochs applies to a compare that trains",
    );
}
