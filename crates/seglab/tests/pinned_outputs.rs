//! Outputs pinned to what main wrote at d693571, before the module restructuring of issue 15 (the files in
//! `tests/data/pinned`, see its README): `evaluate` JSON, `loss`/`gradcheck` JSON, `train` records, a run folder
//! written by that build (resumed and predicted from here). A restructuring must leave every one of them unchanged
//! (the f32 training and loss outputs up to the last bits, which differ between CPUs; see the README there); a change
//! of behaviour that is meant updates the pinned file in the same commit, saying why.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(args)
        .output()
        .expect("run seglab")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "seglab failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn pinned(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pinned")
        .join(name)
}

/// The values of a little-endian f32 `.npy` file (what `predict --save-probabilities` writes).
fn npy_f32(p: &Path) -> Vec<f32> {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", p.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{}: {header}", p.display());
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn crate_data(krate: &str, sub: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("tests/data")
        .join(sub)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

/// The wall-clock fields (`seconds`, a number or an object of them) differ between any two runs; everything else must
/// not. Takes a JSON document or JSON lines.
fn without_seconds(text: &str) -> Vec<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("seconds");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let docs: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect(),
    };
    docs.into_iter()
        .map(|mut v| {
            strip(&mut v);
            v
        })
        .collect()
}

/// Equal up to float rounding: the same keys, strings, integers and array lengths, and numbers within a relative
/// 1e-5 (absolute 1e-9 near zero). The f32 training and loss arithmetic goes through SIMD kernels chosen for the CPU
/// (AVX2 or AVX-512 paths of gemm and burn), so those outputs differ in their last bits between machines; on one
/// machine a restructuring must leave them bit for bit equal (see `tests/data/pinned/README.md`).
fn assert_close(got: &serde_json::Value, want: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (got, want) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "{at}: keys differ");
            for (k, v) in a {
                assert_close(v, &b[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: lengths differ");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-5 * y.abs() + 1e-9,
                "{at}: {x} differs from the pinned {y}"
            );
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

fn assert_json_close(got: &str, want: &str, what: &str) {
    let (g, w) = (without_seconds(got), without_seconds(want));
    assert_eq!(g.len(), w.len(), "{what}: number of records");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert_close(a, b, &format!("{what}[{i}]"));
    }
}

#[test]
fn evaluate_json_is_unchanged() {
    let cases = crate_data("seglab-metrics", "");
    let tmp = tempfile::tempdir().unwrap();
    let runs: [(&str, &str, &[&str]); 4] = [
        (
            "lesions_3d_96x96x48_n1_nii.gz",
            "metric_cases/lesions_3d_96x96x48_n1/{}.nii.gz",
            &[],
        ),
        (
            "blobs_2d_256_png_opts",
            "metric_cases/blobs_2d_256/{}.png",
            &[
                "--connectivity",
                "8",
                "--hd95-convention",
                "medpy",
                "--assd-convention",
                "mean-of-directed",
                "--nsd-convention",
                "voxel",
                "--nsd-tolerance",
                "2",
                "--sweep",
                "--empty-policy",
                "worst",
            ],
        ),
        (
            "aniso_blobs_3d_08_08_30_npy",
            "distance_cases/aniso_blobs_3d_08_08_30/{}.npy",
            &[],
        ),
        (
            "empty_pred_2d_png",
            "metric_cases/empty_pred_2d/{}.png",
            &[],
        ),
    ];
    for (name, pattern, extra) in runs {
        let pred = format!("{cases}/{}", pattern.replace("{}", "pred"));
        let gt = format!("{cases}/{}", pattern.replace("{}", "gt"));
        let out = tmp.path().join(format!("{name}.json"));
        let mut args = vec![
            "evaluate",
            "--pred",
            &pred,
            "--gt",
            &gt,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(seglab(&args));
        let got = read(&out).replace(&cases, "$CASES");
        let want = read(&pinned(&format!("evaluate_{name}.json")));
        assert!(
            got == want,
            "{name}: evaluate JSON differs from the pinned output"
        );
    }
}

#[test]
fn loss_and_gradcheck_json_are_unchanged() {
    let dir = crate_data("seglab-nn", "loss_cases/medium_2x1x64x64");
    let pred = format!("{dir}/pred.npy");
    let target = format!("{dir}/target.npy");
    let runs: [(&str, Vec<&str>); 3] = [
        (
            "tversky_ste",
            vec![
                "--loss",
                "tversky",
                "--alpha",
                "0.3",
                "--beta",
                "0.7",
                "--threshold-mode",
                "ste",
            ],
        ),
        (
            "tversky_power",
            vec![
                "--loss",
                "tversky",
                "--alpha",
                "0.3",
                "--beta",
                "0.7",
                "--threshold-mode",
                "power",
            ],
        ),
        ("dicebce", vec!["--loss", "dice+bce", "--weights", "1,0.5"]),
    ];
    for (name, flags) in runs {
        let mut args = vec!["loss", "--pred", &pred, "--target", &target];
        args.extend(flags);
        args.extend(["--format", "json"]);
        let got = ok(seglab(&args)).stdout;
        let got = String::from_utf8_lossy(&got)
            .replace(&crate_data("seglab-nn", "loss_cases"), "$LOSS_CASES");
        assert_json_close(&got, &read(&pinned(&format!("loss_{name}.json"))), name);
    }
    let o = ok(seglab(&[
        "gradcheck",
        "--shape",
        "2x1x32x32",
        "--seed",
        "0",
        "--format",
        "json",
    ]));
    assert_json_close(
        &String::from_utf8_lossy(&o.stdout),
        &read(&pinned("loss_gradcheck.json")),
        "gradcheck",
    );
}

const TINY_RUN: &[&str] = &[
    "--size",
    "32",
    "--phantom-count",
    "24",
    "--batch-size",
    "4",
    "--base-width",
    "4",
    "--depth",
    "2",
    "--seed",
    "3",
    "--quiet",
];

#[test]
fn train_records_are_unchanged_and_old_runs_resume_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut args = vec!["train", "--out", run.to_str().unwrap(), "--epochs", "2"];
    args.extend_from_slice(TINY_RUN);
    ok(seglab(&args));
    assert_json_close(
        &read(&run.join("metrics.jsonl")),
        &read(&pinned("train_2_epochs.jsonl")),
        "train records",
    );
    for f in ["config.json", "split.json"] {
        assert_eq!(
            read(&run.join(f)),
            read(&pinned("legacy_run").join(f)),
            "{f}"
        );
    }

    // A run folder written by the pinned build: it resumes to the records that build wrote, and predicts the same
    // masks and probabilities.
    let legacy = tmp.path().join("legacy");
    std::fs::create_dir(&legacy).unwrap();
    for e in std::fs::read_dir(pinned("legacy_run")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), legacy.join(e.file_name())).unwrap();
    }
    let mut args = vec![
        "train",
        "--out",
        legacy.to_str().unwrap(),
        "--epochs",
        "3",
        "--resume",
    ];
    args.extend_from_slice(TINY_RUN);
    ok(seglab(&args));
    assert_json_close(
        &read(&legacy.join("metrics.jsonl")),
        &read(&pinned("train_3_epochs.jsonl")),
        "resumed legacy run records",
    );
    let pred = tmp.path().join("pred");
    ok(seglab(&[
        "predict",
        "--model",
        legacy.to_str().unwrap(),
        "--input",
        pinned("predict_inputs").to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        "--save-probabilities",
    ]));
    let want = pinned("predict_outputs");
    let mut compared = 0;
    for e in std::fs::read_dir(&want).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            continue;
        }
        let got = std::fs::read(pred.join(e.file_name())).unwrap();
        assert!(
            got == std::fs::read(e.path()).unwrap(),
            "mask {:?} differs",
            e.file_name()
        );
        compared += 1;
    }
    for e in std::fs::read_dir(want.join("probabilities")).unwrap() {
        let e = e.unwrap();
        let got = npy_f32(&pred.join("probabilities").join(e.file_name()));
        let pinned = npy_f32(&e.path());
        assert_eq!(got.len(), pinned.len(), "{:?}", e.file_name());
        for (i, (a, b)) in got.iter().zip(&pinned).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5,
                "{:?}[{i}]: {a} vs pinned {b}",
                e.file_name()
            );
        }
        compared += 1;
    }
    assert_eq!(compared, 8, "4 masks and 4 probability maps");
}
