//! `seglab evaluate` end to end: the binary on temporary folders. Pins the JSON schema and checks that every bad
//! input exits with 2, names the file on one line and writes no output file.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seglab_metrics::io::{self, NiftiData, NpyData};
use seglab_metrics::{Mask, Metrics};
use serde_json::Value;

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap()
}

fn square(h: usize, w: usize, r0: usize, c0: usize, size: usize) -> Mask {
    let mut m = Mask::zeros(vec![h, w], vec![1.0, 1.0]);
    for r in r0..r0 + size {
        for c in c0..c0 + size {
            m.data_mut()[r * w + c] = true;
        }
    }
    m
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// pred/ and gt/ with three PNG cases (one with an empty prediction) and a `_seg` suffix on one gt.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pred")).unwrap();
        std::fs::create_dir(dir.path().join("gt")).unwrap();
        let f = Fixture { dir };
        io::write_png_mask(&f.pred("a.png"), &square(16, 16, 2, 2, 5)).unwrap();
        io::write_png_mask(&f.gt("a.png"), &square(16, 16, 3, 2, 5)).unwrap();
        io::write_png_mask(&f.pred("b.png"), &square(16, 16, 8, 8, 4)).unwrap();
        io::write_png_mask(&f.gt("b_seg.png"), &square(16, 16, 8, 8, 4)).unwrap();
        io::write_png_mask(&f.pred("c.png"), &Mask::zeros(vec![16, 16], vec![1.0, 1.0])).unwrap();
        io::write_png_mask(&f.gt("c_mask.png"), &square(16, 16, 0, 0, 3)).unwrap();
        f
    }
    fn pred(&self, name: &str) -> PathBuf {
        self.dir.path().join("pred").join(name)
    }
    fn gt(&self, name: &str) -> PathBuf {
        self.dir.path().join("gt").join(name)
    }
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(p: &Path) -> String {
        p.display().to_string()
    }
    /// Runs on the folders with --out/--csv; distances off (they land with branch metrics-distance).
    fn run(&self, extra: &[&str]) -> Output {
        let (out, csv) = (Self::s(&self.out("r.json")), Self::s(&self.out("r.csv")));
        let (pred, gt) = (
            Self::s(&self.dir.path().join("pred")),
            Self::s(&self.dir.path().join("gt")),
        );
        let mut args = vec![
            "--pred",
            &pred,
            "--gt",
            &gt,
            "--out",
            &out,
            "--csv",
            &csv,
            "--no-distances",
        ];
        args.extend(extra);
        seglab(&args)
    }
    /// The command failed with exit code 2, one stderr line containing `needle` and `file`, and no output.
    fn assert_bad_input(&self, output: &Output, file: &str, needle: &str) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line expected: {stderr}"
        );
        assert!(stderr.contains(file), "'{file}' not named: {stderr}");
        assert!(stderr.contains(needle), "'{needle}' not said: {stderr}");
        assert!(
            !self.out("r.json").exists() && !self.out("r.csv").exists(),
            "output written on error"
        );
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn json_schema_is_pinned() {
    let f = Fixture::new();
    let o = f.run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(f.out("r.json")).unwrap()).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["cases", "settings", "summary", "version"]);
    assert_eq!(v["version"], 1);
    for k in [
        "threshold",
        "gt_threshold",
        "spacing",
        "beta",
        "tversky_alpha",
        "tversky_beta",
        "distances",
        "distance",
        "lesion",
        "empty_policy",
        "ignore_spacing_mismatch",
        "allow_missing",
        "sweep",
        "sweep_step",
        "pred",
        "gt",
    ] {
        assert!(v["settings"].get(k).is_some(), "settings.{k} missing");
    }
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(
        cases
            .iter()
            .map(|c| c["case"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    for c in cases {
        assert_eq!(
            keys(c),
            ["case", "lesions", "metrics", "shape", "spacing", "status"]
        );
        assert_eq!(c["shape"], serde_json::json!([16, 16]));
        // serde_json::Value sorts keys; the order in the file is Metrics::NAMES (checked on the text below).
        let mut names: Vec<String> = Metrics::NAMES.iter().map(|s| s.to_string()).collect();
        names.sort();
        assert_eq!(keys(&c["metrics"]), names);
        assert_eq!(
            keys(&c["status"]),
            ["distances", "empty", "in_summary", "policy"]
        );
    }
    // Case a: 5x5 squares shifted by one row: tp 20, dice 0.8; b identical; c empty prediction.
    assert_eq!(cases[0]["metrics"]["tp"], 20.0);
    assert_eq!(cases[0]["metrics"]["dice"], 0.8);
    assert_eq!(cases[1]["metrics"]["dice"], 1.0);
    assert_eq!(cases[2]["metrics"]["dice"], 0.0);
    assert_eq!(cases[2]["status"]["empty"], "prediction");
    assert!(cases[2]["metrics"]["hd95"].is_null());
    assert_eq!(
        cases[0]["lesions"],
        serde_json::json!([{"size": 25, "dice": 0.8, "detected": true}])
    );
    let dice = &v["summary"]["dice"];
    assert_eq!(keys(dice), ["ci95", "mean", "median", "n", "std"]);
    assert!((dice["mean"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(dice["median"], 0.8);
    assert_eq!(dice["n"], 3);
    assert_eq!(v["summary"]["empty_masks"]["empty_prediction"], 1);
    // Non-finite values are null, never NaN text.
    let text = std::fs::read_to_string(f.out("r.json")).unwrap();
    assert!(!text.contains("NaN") && !text.contains("Infinity"));
    // (settings.distance also has "hd95"/"assd"/"nsd" keys: look inside the first case's metrics.)
    let first_metrics = &text[text.find("\"metrics\":").unwrap()..];
    let positions: Vec<usize> = Metrics::NAMES
        .iter()
        .map(|k| first_metrics.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "metric keys out of order"
    );
    let csv = std::fs::read_to_string(f.out("r.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with("case,empty,distances,tp,fp,fn,tn,"));
    // The readable table is on stdout.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("dice") && stdout.contains("0.6000"),
        "{stdout}"
    );
}

#[test]
fn single_pair_and_policies_and_sweep() {
    let f = Fixture::new();
    let (p, g) = (
        Fixture::s(&f.pred("c.png")),
        Fixture::s(&f.gt("c_mask.png")),
    );
    let out = Fixture::s(&f.out("one.json"));
    let o = seglab(&[
        "--pred",
        &p,
        "--gt",
        &g,
        "--out",
        &out,
        "--empty-policy",
        "skip",
        "--no-distances",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["cases"][0]["case"], "c");
    assert_eq!(v["cases"][0]["status"]["in_summary"], false);
    assert_eq!(v["summary"]["dice"]["n"], 0);
    assert_eq!(v["summary"]["empty_masks"]["cases_skipped"], 1);

    // A probability map: sweep finds the threshold separating lesion (0.7) from background (0.2).
    let mut probs = vec![0.2f32; 64];
    let gt = square(8, 8, 1, 1, 3);
    for (p, &g) in probs.iter_mut().zip(gt.data()) {
        if g {
            *p = 0.7;
        }
    }
    io::write_npy(&f.out("p.npy"), &[8, 8], NpyData::F32(&probs)).unwrap();
    io::write_npy(&f.out("g.npy"), &[8, 8], NpyData::Bool(gt.data())).unwrap();
    let (p, g) = (Fixture::s(&f.out("p.npy")), Fixture::s(&f.out("g.npy")));
    let o = seglab(&[
        "--pred",
        &p,
        "--gt",
        &g,
        "--out",
        &out,
        "--sweep",
        "--no-distances",
        "--threshold",
        "0.1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(v["cases"][0]["metrics"]["dice"].as_f64().unwrap() < 0.5);
    assert_eq!(v["sweep"]["best_threshold"].as_f64().unwrap() as f32, 0.25);
    assert_eq!(v["sweep"]["best_mean_dice"], 1.0);
    assert_eq!(v["sweep"]["points"].as_array().unwrap().len(), 19);
}

#[test]
fn empty_masks_with_distances_follow_the_default_policy() {
    // Both-empty and one-empty cases never reach the distance computation: their values come from the policy.
    let f = Fixture::new();
    let z = Mask::zeros(vec![16, 16], vec![1.0, 1.0]);
    io::write_png_mask(&f.out("z.png"), &z).unwrap();
    let out = Fixture::s(&f.out("d.json"));
    let zs = Fixture::s(&f.out("z.png"));
    let o = seglab(&["--pred", &zs, "--gt", &zs, "--out", &out]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let m = &v["cases"][0]["metrics"];
    assert_eq!(
        (m["dice"].as_f64(), m["hd95"].as_f64(), m["nsd"].as_f64()),
        (Some(1.0), Some(0.0), Some(1.0))
    );
    let g = Fixture::s(&f.gt("a.png"));
    let o = seglab(&["--pred", &zs, "--gt", &g, "--out", &out]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        v["cases"][0]["status"]["distances"],
        "undefined: empty prediction"
    );
    assert!(v["cases"][0]["metrics"]["hd"].is_null());
}

#[test]
fn unmatched_files_fail_or_are_skipped() {
    let f = Fixture::new();
    io::write_png_mask(&f.pred("extra.png"), &square(16, 16, 0, 0, 2)).unwrap();
    f.assert_bad_input(&f.run(&[]), "extra.png", "no ground truth");
    let o = f.run(&["--allow-missing"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning"));
    let v: Value = serde_json::from_slice(&std::fs::read(f.out("r.json")).unwrap()).unwrap();
    assert_eq!(v["cases"].as_array().unwrap().len(), 3);
}

#[test]
fn shape_mismatch() {
    let f = Fixture::new();
    io::write_png_mask(&f.pred("b.png"), &square(16, 17, 8, 8, 4)).unwrap();
    f.assert_bad_input(&f.run(&[]), "b.png", "shape mismatch");
}

#[test]
fn spacing_mismatch_and_override() {
    let f = Fixture::new();
    let m = square(16, 16, 2, 2, 5);
    std::fs::remove_file(f.pred("a.png")).unwrap();
    std::fs::remove_file(f.gt("a.png")).unwrap();
    io::write_nifti(
        &f.pred("a.nii.gz"),
        &[16, 16],
        &[1.0, 1.0],
        NiftiData::Mask(m.data()),
        None,
    )
    .unwrap();
    io::write_nifti(
        &f.gt("a.nii.gz"),
        &[16, 16],
        &[1.0, 1.01],
        NiftiData::Mask(m.data()),
        None,
    )
    .unwrap();
    f.assert_bad_input(&f.run(&[]), "a.nii.gz", "spacing mismatch");
    assert!(f.run(&["--ignore-spacing-mismatch"]).status.success());
}

#[test]
fn non_binary_ground_truth() {
    let f = Fixture::new();
    std::fs::remove_file(f.gt("a.png")).unwrap();
    let labels: Vec<u8> = (0..256).map(|i| (i % 3) as u8).collect();
    io::write_npy(&f.gt("a.npy"), &[16, 16], NpyData::U8(&labels)).unwrap();
    f.assert_bad_input(&f.run(&[]), "a.npy", "values found: 0, 1, 2");
    assert!(f.run(&["--gt-threshold", "1"]).status.success());
}

#[test]
fn nan_in_prediction() {
    let f = Fixture::new();
    std::fs::remove_file(f.pred("a.png")).unwrap();
    let mut p = vec![0.0f32; 256];
    p[7] = f32::NAN;
    io::write_npy(&f.pred("a.npy"), &[16, 16], NpyData::F32(&p)).unwrap();
    f.assert_bad_input(&f.run(&[]), "a.npy", "non-finite");
}

#[test]
fn truncated_files() {
    for (name, make) in [("a.png", 0), ("a.nii.gz", 1), ("a.npy", 2)] {
        let f = Fixture::new();
        std::fs::remove_file(f.pred("a.png")).unwrap();
        let m = square(16, 16, 2, 2, 5);
        let path = f.pred(name);
        match make {
            0 => io::write_png_mask(&path, &m).unwrap(),
            1 => io::write_nifti(
                &path,
                &[16, 16],
                &[1.0, 1.0],
                NiftiData::Mask(m.data()),
                None,
            )
            .unwrap(),
            _ => io::write_npy(&path, &[16, 16], NpyData::Bool(m.data())).unwrap(),
        }
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let o = f.run(&[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("truncated") || stderr.contains("corrupt"),
            "{name}: {stderr}"
        );
        f.assert_bad_input(&o, name, "");
    }
}

#[test]
fn empty_folder_and_directory_as_file() {
    let f = Fixture::new();
    let empty = f.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (e, g) = (Fixture::s(&empty), Fixture::s(&f.dir.path().join("gt")));
    let out = Fixture::s(&f.out("r.json"));
    f.assert_bad_input(
        &seglab(&["--pred", &e, "--gt", &g, "--out", &out]),
        "empty",
        "no .png",
    );
    // A folder where a file is expected.
    std::fs::remove_file(f.pred("a.png")).unwrap();
    std::fs::create_dir(f.pred("a.png")).unwrap();
    f.assert_bad_input(&f.run(&[]), "a.png", "is a directory");
    let file = Fixture::s(&f.gt("b_seg.png"));
    let pred_dir = Fixture::s(&f.dir.path().join("pred"));
    f.assert_bad_input(
        &seglab(&["--pred", &pred_dir, "--gt", &file, "--out", &out]),
        "pred",
        "is a directory",
    );
}

#[test]
fn a_panic_is_one_line_and_exit_101() {
    let o = Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(["evaluate", "--help"])
        .env("SEGLAB_TEST_INTERNAL_PANIC", "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(101));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("internal error: requested by SEGLAB_TEST_INTERNAL_PANIC at ")
            && err.contains("please report"),
        "{err}"
    );
}
