//! End-to-end: `seglab synth` -> `seglab train` -> `seglab predict`, and the bad-input contract (exit 2, one line
//! naming the file, no run folder left behind).
use std::path::Path;
use std::process::{Command, Output};

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(args)
        .output()
        .expect("run seglab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const TINY: &[&str] = &[
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

#[test]
fn synth_train_predict_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = seglab(&[
        "synth",
        data.to_str().unwrap(),
        "--count",
        "12",
        "--size",
        "48",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(data.join("images")).unwrap().count(), 12);
    assert_eq!(std::fs::read_dir(data.join("masks")).unwrap().count(), 12);

    let run = tmp.path().join("run");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "2",
    ];
    args.extend_from_slice(TINY);
    let o = seglab(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let jsonl = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 2);
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "epoch",
            "train_loss",
            "val_loss",
            "val_dice",
            "val_iou",
            "val_precision",
            "val_recall",
            "grad_norm",
            "zero_grad_fraction",
            "seconds",
        ] {
            assert!(
                v.get(key).is_some_and(|x| x.is_number()),
                "{key} missing in {line}"
            );
        }
        // Undefined lesion scores (no lesion predicted yet) are null, never NaN text.
        for key in [
            "val_best_threshold_dice",
            "val_best_threshold_iou",
            "val_best_threshold_precision",
            "val_best_threshold_recall",
            "val_lesion_recall",
            "val_lesion_precision",
            "val_lesion_f1",
        ] {
            assert!(
                v.get(key).is_some_and(|x| x.is_number() || x.is_null()),
                "{key} missing in {line}"
            );
        }
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("epoch,") && csv.lines().count() == 3);
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    assert_eq!(
        split["train"].as_array().unwrap().len() + split["val"].as_array().unwrap().len(),
        12
    );

    // Predict on the 48x48 originals: masks come back at 48x48 (the model ran at 32x32).
    let pred = tmp.path().join("pred");
    let o = seglab(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        "--save-probabilities",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = image::open(pred.join("phantom_0000.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(m.dimensions(), (48, 48));
    assert!(m.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    let p: ndarray::Array2<f32> =
        ndarray_npy::read_npy(pred.join("probabilities/phantom_0000.npy")).unwrap();
    assert_eq!(p.dim(), (48, 48));
    // The mask is the thresholded probability map.
    for (pv, mv) in p.iter().zip(m.pixels()) {
        assert_eq!(*pv >= 0.5, mv.0[0] == 255);
    }

    // --resume of a finished run with more epochs continues it; a changed setting is refused.
    let o = seglab(&[
        "train",
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--epochs",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    let o = seglab(&[
        "train",
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--lr",
        "0.5",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different config"), "{}", stderr(&o));
}

fn assert_bad_input(args: &[&str], run: &Path, expect: &str) {
    let o = seglab(args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(!run.exists(), "bad input left a run folder behind");
}

#[test]
fn bad_inputs_exit_2_without_a_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run = tmp.path().join("run");
    let out = run.to_str().unwrap();
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let d = data.to_str().unwrap();
    assert_bad_input(&["train", "--data", d, "--out", out], &run, "no images");

    let gray = |w, h| image::GrayImage::new(w, h);
    gray(32, 32).save(data.join("images/a.png")).unwrap();
    gray(32, 32).save(data.join("images/b.png")).unwrap();
    gray(32, 32).save(data.join("masks/a.png")).unwrap();
    assert_bad_input(
        &["train", "--data", d, "--out", out],
        &run,
        "images without a mask: b",
    );

    gray(16, 32).save(data.join("masks/b_seg.png")).unwrap();
    assert_bad_input(
        &["train", "--data", d, "--out", out],
        &run,
        "b_seg.png: mask is 32x16",
    );

    std::fs::write(data.join("masks/b_seg.png"), b"garbage").unwrap();
    assert_bad_input(
        &["train", "--data", d, "--out", out],
        &run,
        "b_seg.png: corrupt",
    );

    assert_bad_input(
        &["train", "--data", "builtin:nope", "--out", out],
        &run,
        "unknown data set",
    );
    assert_bad_input(
        &["train", "--size", "100", "--out", out],
        &run,
        "--size 100 must be a multiple of 16",
    );
    // Library errors name the config key; train reports the flag.
    assert_bad_input(
        &["train", "--lr", "0", "--out", out],
        &run,
        "--lr must be positive, got 0",
    );
    assert_bad_input(
        &["train", "--out", out, "--resume"],
        &run,
        "no run to resume",
    );
    // Devices by name; the message lists what this build has.
    assert_bad_input(
        &["train", "--out", out, "--device", "tpu"],
        &run,
        "--device: unknown device 'tpu' (this build has: cpu)",
    );
    let o = seglab(&[
        "predict", "--model", out, "--input", d, "--out", out, "--device", "tpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown device 'tpu'"),
        "{}",
        stderr(&o)
    );
}
