//! `seglab loss` and `seglab gradcheck` end to end: values against the PyTorch golden files that
//! seglab-nn's parity tests use, the gradient file, and bad input (exit 2, one clear line, no
//! partial output).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(args)
        .output()
        .expect("run seglab")
}

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seglab-nn/tests/data/loss_cases")
        .join(case)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write(dir: &Path, name: &str, shape: &[usize], data: Vec<f32>) -> PathBuf {
    let path = dir.join(name);
    let a = ArrayD::from_shape_vec(IxDyn(shape), data).unwrap();
    ndarray_npy::write_npy(&path, &a).unwrap();
    path
}

fn read(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let a: ArrayD<f32> = ndarray_npy::read_npy(path).unwrap();
    (a.iter().copied().collect(), a.shape().to_vec())
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Exit code 2, a single error line that contains `needle`, nothing on stdout.
fn assert_fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn loss_matches_pytorch_golden_and_writes_the_gradient() {
    let case = golden("medium_2x1x64x64");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grad_out = dir.path().join("g.npy");
    let out = seglab(&[
        "loss",
        "--pred",
        s(&case.join("pred.npy")),
        "--target",
        s(&case.join("target.npy")),
        "--loss",
        "tversky",
        "--alpha",
        "0.3",
        "--beta",
        "0.7",
        "--smooth",
        "1",
        "--threshold-mode",
        "ste",
        "--threshold",
        "0.5",
        "--grad-out",
        s(&grad_out),
    ]);
    let report = json(&out);
    let want = expected["variants"]["tversky_a0.3_b0.7_s1_ste"]["loss"]
        .as_f64()
        .unwrap();
    let got = report["loss"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    assert_eq!(report["settings"]["threshold_mode"]["mode"], "ste");
    assert_eq!(report["settings"]["loss"], "tversky");

    let (grad, shape) = read(&grad_out);
    assert_eq!(shape, vec![2, 1, 64, 64]);
    let (torch, _) = read(&case.join("grad_tversky_a0.3_b0.7_s1_ste.npy"));
    for (g, e) in grad.iter().zip(&torch) {
        let d = (g - e).abs();
        assert!(d <= 1e-6 || d <= 1e-4 * e.abs(), "{g} vs {e}");
    }
    // The statistics describe the file that was written.
    let norm = grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
    assert!((report["grad"]["norm"].as_f64().unwrap() - norm).abs() <= 1e-9 * norm.max(1.0));
    let max = grad.iter().cloned().fold(f32::MIN, f32::max) as f64;
    assert_eq!(report["grad"]["max"].as_f64().unwrap(), max);
    assert_eq!(report["grad"]["zero_fraction"].as_f64().unwrap(), 0.0);
    // Only the final file is left behind (the temporary one was renamed).
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn hard_mode_reports_an_all_zero_gradient() {
    let case = golden("tiny_1x1x4x4");
    let out = seglab(&[
        "loss",
        "--pred",
        s(&case.join("pred.npy")),
        "--target",
        s(&case.join("target.npy")),
        "--loss",
        "dice",
        "--threshold-mode",
        "hard",
    ]);
    let report = json(&out);
    assert_eq!(report["grad"]["zero_fraction"].as_f64().unwrap(), 1.0);
    assert_eq!(report["grad"]["norm"].as_f64().unwrap(), 0.0);
    assert!(report["loss"].as_f64().unwrap() > 0.0);
}

#[test]
fn weighted_sum_is_the_weighted_sum_of_its_terms() {
    let case = golden("tiny_1x1x4x4");
    let (p, t) = (case.join("pred.npy"), case.join("target.npy"));
    let value = |extra: &[&str]| {
        let mut args = vec!["loss", "--pred", s(&p), "--target", s(&t)];
        args.extend_from_slice(extra);
        json(&seglab(&args))["loss"].as_f64().unwrap()
    };
    let dice = value(&["--loss", "dice"]);
    let bce = value(&["--loss", "bce"]);
    let sum = value(&["--loss", "dice+bce", "--weights", "1,0.5"]);
    assert!(
        (sum - (dice + 0.5 * bce)).abs() < 1e-6,
        "{sum} vs {dice} + 0.5 {bce}"
    );
}

#[test]
fn text_format_and_2d_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.npy",
        &[4, 4],
        (0..16).map(|i| i as f32 / 16.0).collect(),
    );
    let t = write(
        dir.path(),
        "t.npy",
        &[4, 4],
        (0..16).map(|i| (i % 2) as f32).collect(),
    );
    let g = dir.path().join("g.npy");
    let out = seglab(&[
        "loss",
        "--pred",
        s(&p),
        "--target",
        s(&t),
        "--format",
        "text",
        "--grad-out",
        s(&g),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("loss "), "{text}");
    assert!(text.contains("zero fraction"));
    // The gradient file has the input's own shape.
    assert_eq!(read(&g).1, vec![4, 4]);
}

#[test]
fn logits_outside_unit_interval_are_accepted_with_from_logits() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.npy",
        &[1, 1, 2, 2],
        vec![-3.0, 2.0, 0.5, 7.0],
    );
    let t = write(dir.path(), "t.npy", &[1, 1, 2, 2], vec![0.0, 1.0, 0.0, 1.0]);
    let r = json(&seglab(&[
        "loss",
        "--pred",
        s(&p),
        "--target",
        s(&t),
        "--loss",
        "bce-with-logits",
        "--from-logits",
    ]));
    // mean(softplus(z) - z t)
    let want = [(-3.0f64, 0.0), (2.0, 1.0), (0.5, 0.0), (7.0, 1.0)]
        .iter()
        .map(|&(z, t)| (1.0 + z.exp()).ln() - z * t)
        .sum::<f64>()
        / 4.0;
    assert!((r["loss"].as_f64().unwrap() - want).abs() < 1e-6);
    let out = seglab(&[
        "loss",
        "--pred",
        s(&p),
        "--target",
        s(&t),
        "--loss",
        "bce-with-logits",
    ]);
    assert_fails(&out, "outside [0, 1]");
}

#[test]
fn bad_inputs_exit_2_with_the_file_named_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_p = write(d, "p.npy", &[1, 1, 2, 2], vec![0.1, 0.9, 0.4, 0.6]);
    let good_t = write(d, "t.npy", &[1, 1, 2, 2], vec![0.0, 1.0, 0.0, 1.0]);
    let wide_t = write(d, "wide.npy", &[1, 1, 2, 3], vec![0.0; 6]);
    let high_p = write(d, "high.npy", &[1, 1, 2, 2], vec![0.1, 1.5, 0.4, 0.6]);
    let nan_p = write(d, "nan.npy", &[1, 1, 2, 2], vec![0.1, f32::NAN, 0.4, 0.6]);
    let inf_p = write(
        d,
        "inf.npy",
        &[1, 1, 2, 2],
        vec![0.1, f32::INFINITY, 0.4, 0.6],
    );
    let soft_t = write(d, "soft.npy", &[1, 1, 2, 2], vec![0.0, 0.5, 0.0, 1.0]);
    let rank3 = write(d, "r3.npy", &[1, 2, 2], vec![0.1, 0.9, 0.4, 0.6]);
    let not_npy = d.join("junk.npy");
    std::fs::write(&not_npy, b"not an npy file").unwrap();
    let g = d.join("g.npy");
    let run = |p: &Path, t: &Path, extra: &[&str]| {
        let mut args = vec![
            "loss",
            "--pred",
            s(p),
            "--target",
            s(t),
            "--grad-out",
            s(&g),
        ];
        args.extend_from_slice(extra);
        seglab(&args)
    };
    assert_fails(&run(&good_p, &wide_t, &[]), "shape mismatch");
    assert_fails(&run(&good_p, &wide_t, &[]), "wide.npy");
    assert_fails(&run(&high_p, &good_t, &[]), "high.npy");
    assert_fails(&run(&nan_p, &good_t, &[]), "non-finite");
    assert_fails(&run(&inf_p, &good_t, &["--from-logits"]), "inf.npy");
    assert_fails(&run(&good_p, &soft_t, &[]), "soft.npy: target value 0.5");
    assert_fails(&run(&rank3, &rank3, &[]), "rank 3");
    assert_fails(&run(&not_npy, &good_t, &[]), "junk.npy");
    assert_fails(&run(&good_p, &d.join("missing.npy"), &[]), "missing.npy");
    assert_fails(
        &run(&good_p, &good_t, &["--smooth", "-1"]),
        "smooth must be",
    );
    assert_fails(
        &run(&good_p, &good_t, &["--alpha", "-0.5"]),
        "alpha must be",
    );
    assert_fails(
        &run(
            &good_p,
            &good_t,
            &["--threshold-mode", "soft", "--temperature", "0"],
        ),
        "temperature must be",
    );
    assert_fails(
        &run(
            &good_p,
            &good_t,
            &["--threshold-mode", "hard", "--threshold", "1.5"],
        ),
        "threshold must be",
    );
    assert_fails(
        &run(&good_p, &good_t, &["--threshold-mode", "binary"]),
        "unknown threshold mode",
    );
    assert_fails(
        &run(&good_p, &good_t, &["--loss", "dyce"]),
        "unknown loss 'dyce'",
    );
    assert_fails(
        &run(&good_p, &good_t, &["--loss", "dice+bce", "--weights", "1"]),
        "1 weights for 2 losses",
    );
    assert_fails(
        &run(&good_p, &good_t, &["--reduction", "sum"]),
        "unknown reduction",
    );
    assert!(!g.exists(), "no gradient file after a failure");
    // Control: the same files and options succeed when valid.
    assert!(run(&good_p, &good_t, &[]).status.success());
    assert!(g.exists());
}

#[test]
fn gradcheck_shows_hard_kills_the_gradient_and_ste_does_not() {
    let out = seglab(&[
        "gradcheck",
        "--shape",
        "2x1x32x32",
        "--seed",
        "3",
        "--format",
        "json",
    ]);
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 25, "5 losses x 5 modes");
    for row in rows {
        let zero = row["zero_fraction"].as_f64().unwrap();
        let norm = row["grad_norm"].as_f64().unwrap();
        assert!(row["loss_value"].as_f64().unwrap().is_finite());
        match row["mode"].as_str().unwrap() {
            "hard" => {
                assert_eq!(zero, 1.0, "{row}");
                assert_eq!(norm, 0.0);
                assert!(row["reading"].as_str().unwrap().contains("cannot learn"));
            }
            "none" | "soft" | "power" => assert!(zero < 0.01 && norm > 0.0, "{row}"),
            "ste" => assert!(zero < 1.0 && norm > 0.0, "{row}"),
            other => panic!("unexpected mode {other}"),
        }
    }
    // hard and ste see the same binary mask: same loss value.
    let value = |loss: &str, mode: &str| {
        rows.iter()
            .find(|r| r["loss"] == loss && r["mode"] == mode)
            .unwrap()["loss_value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("tversky", "hard"), value("tversky", "ste"));
    assert_ne!(value("tversky", "hard"), value("tversky", "none"));
}

#[test]
fn gradcheck_on_files_and_a_cold_soft_threshold() {
    let case = golden("medium_2x1x64x64");
    let out = seglab(&[
        "gradcheck",
        "--pred",
        s(&case.join("pred.npy")),
        "--target",
        s(&case.join("target.npy")),
        "--losses",
        "tversky",
        "--modes",
        "soft",
        "--temperature",
        "0.005",
        "--format",
        "json",
    ]);
    let report = json(&out);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]["tiny_fraction"].as_f64().unwrap() > 0.5,
        "{}",
        rows[0]
    );
    assert!(rows[0]["reading"]
        .as_str()
        .unwrap()
        .contains("near the threshold"));
    let text = seglab(&["gradcheck", "--shape", "1x1x16x16"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("cannot learn"));
    assert_fails(&seglab(&["gradcheck", "--shape", "8x1x64"]), "--shape");
}
