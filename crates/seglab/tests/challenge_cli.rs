//! `seglab evaluate` with label maps, regions, BraTS 2023 lesion-wise scores and instance matching, end to end on
//! the reference cases of `seglab-metrics/tests/data/brats_cases` (values of the challenge's reference code).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap()
}

fn brats_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seglab-metrics/tests/data/brats_cases")
}

/// pred/<case>.nii.gz and gt/<case>.nii.gz for every reference case; the expected values by case.
fn folders(dir: &Path) -> Vec<(String, Value)> {
    std::fs::create_dir(dir.join("pred")).unwrap();
    std::fs::create_dir(dir.join("gt")).unwrap();
    let mut cases = Vec::new();
    for e in std::fs::read_dir(brats_dir()).unwrap() {
        let p = e.unwrap().path();
        if !p.join("expected.json").exists() {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(
            p.join("pred.nii.gz"),
            dir.join("pred").join(format!("{name}.nii.gz")),
        )
        .unwrap();
        std::fs::copy(
            p.join("gt.nii.gz"),
            dir.join("gt").join(format!("{name}.nii.gz")),
        )
        .unwrap();
        let expected =
            serde_json::from_str(&std::fs::read_to_string(p.join("expected.json")).unwrap())
                .unwrap();
        cases.push((name, expected));
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(cases.len(), 11);
    cases
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn regions_and_challenges_reproduce_the_reference_per_case_and_on_average() {
    let dir = tempfile::tempdir().unwrap();
    let cases = folders(dir.path());
    let (pred, gt) = (s(&dir.path().join("pred")), s(&dir.path().join("gt")));
    for (flag, name) in [
        ("gli", "BraTS-GLI"),
        ("men", "BraTS-MEN"),
        ("met", "BraTS-MET"),
    ] {
        let out = s(&dir.path().join(format!("{flag}.json")));
        let csv = s(&dir.path().join(format!("{flag}.csv")));
        let o = seglab(&[
            "--pred",
            &pred,
            "--gt",
            &gt,
            "--regions",
            "WT=1,2,3,TC=1,3,ET=3",
            "--lesion-wise",
            "brats2023",
            "--brats-challenge",
            flag,
            "--out",
            &out,
            "--csv",
            &csv,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        // Regions keep the given order in the summary and in every case.
        let summary = text.find("\"summary\"").unwrap();
        let order: Vec<usize> = ["\"WT\"", "\"TC\"", "\"ET\""]
            .iter()
            .map(|k| summary + text[summary..].find(k).unwrap())
            .collect();
        assert!(order[0] < order[1] && order[1] < order[2], "{order:?}");
        for region in ["WT", "TC", "ET"] {
            let mut dice = Vec::new();
            for (k, (case, expected)) in cases.iter().enumerate() {
                let c = &json["cases"][k];
                assert_eq!(c["case"], case.as_str());
                let row = &expected["challenges"][name]["regions"][region]["summary_row"];
                let lw = &c["regions"][region]["lesionwise"];
                let theirs = row["LesionWise_Score_Dice"].as_f64().unwrap();
                assert!(
                    (lw["dice"].as_f64().unwrap() - theirs).abs() <= 1e-6 * theirs.max(1e-12),
                    "{case} {region}"
                );
                let hd = row["LesionWise_Score_HD95"].as_f64().unwrap();
                assert!(
                    (lw["hd95"].as_f64().unwrap() - hd).abs() <= (1e-4 * hd).max(1e-6),
                    "{case} {region}"
                );
                assert_eq!(lw["fp"].as_f64().unwrap(), row["Num_FP"].as_f64().unwrap());
                let legacy = row["Legacy_HD95"].as_f64().unwrap();
                let ours = c["regions"][region]["metrics"]["hd95"].as_f64().unwrap();
                assert!(
                    (ours - legacy).abs() <= (1e-4 * legacy).max(1e-6),
                    "{case} {region} legacy hd95"
                );
                dice.push(theirs);
            }
            // The challenge's case average.
            let mean = dice.iter().sum::<f64>() / dice.len() as f64;
            let ours = json["summary"][region]["lesionwise"]["dice"]["mean"]
                .as_f64()
                .unwrap();
            assert!(
                (ours - mean).abs() < 1e-9,
                "{flag} {region}: {ours} vs {mean}"
            );
        }
        let rows = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(rows.lines().count(), 1 + 3 * 11);
        assert!(rows.lines().next().unwrap().starts_with("case,region,"));
        assert!(rows.lines().next().unwrap().contains("lesionwise_dice"));
    }
}

#[test]
fn labels_select_one_region_and_explicit_parameters_equal_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    folders(dir.path());
    let (pred, gt) = (s(&dir.path().join("pred")), s(&dir.path().join("gt")));
    let run = |extra: &[&str], out: &str| {
        let out = s(&dir.path().join(out));
        let mut args = vec![
            "--pred", &pred, "--gt", &gt, "--labels", "1,3", "--out", &out,
        ];
        args.extend(extra);
        let o = seglab(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        v
    };
    let a = run(
        &[
            "--lesion-wise",
            "brats2023",
            "--brats-challenge",
            "men",
            "--instances",
        ],
        "a.json",
    );
    let b = run(
        &[
            "--lesion-wise",
            "brats2023",
            "--gt-dilation",
            "1",
            "--min-lesion-volume",
            "50",
            "--instances",
        ],
        "b.json",
    );
    assert_eq!(a["cases"], b["cases"]);
    assert_eq!(a["settings"]["labels"], serde_json::json!([1, 3]));
    assert!(a["cases"][0]["instances"]["tp"].is_u64());
    assert!(a["summary"]["instances"]["pq"]["n"].as_u64().unwrap() > 0);
    // Without the options the objects are absent.
    let plain = run(&[], "c.json");
    assert!(
        plain["cases"][0].get("lesionwise").is_none()
            && plain["cases"][0].get("instances").is_none()
    );
}

#[test]
fn bad_options_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    folders(dir.path());
    let (pred, gt) = (s(&dir.path().join("pred")), s(&dir.path().join("gt")));
    let out = s(&dir.path().join("r.json"));
    for (extra, needle) in [
        (vec!["--regions", "=1,2"], "empty name"),
        (vec!["--regions", "WT=1,WT=2"], "given twice"),
        (
            vec!["--lesion-wise", "brats2023", "--gt-dilation", "-1"],
            "--gt-dilation -1 must be >= 0",
        ),
        (
            vec!["--lesion-wise", "brats2023", "--min-lesion-volume", "-5"],
            "must be a number >= 0",
        ),
        (
            vec!["--lesion-wise", "brats2023", "--brats-challenge", "xyz"],
            "unknown BraTS challenge",
        ),
        (
            vec!["--instances", "--match-iou", "1.5"],
            "must be in [0, 1]",
        ),
        (vec!["--labels", "1,a"], "not an integer"),
    ] {
        let mut args = vec!["--pred", &pred, "--gt", &gt, "--out", &out];
        args.extend(extra.iter().copied());
        let o = seglab(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!Path::new(&out).exists());
    }
    // Multi-label ground truth without --labels: the error says what to pass.
    let o = seglab(&["--pred", &pred, "--gt", &gt]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("--labels / --regions"), "{stderr}");
}

#[test]
fn a_label_in_no_file_is_a_warning_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    folders(dir.path());
    let (pred, gt) = (s(&dir.path().join("pred")), s(&dir.path().join("gt")));
    let o = seglab(&[
        "--pred",
        &pred,
        "--gt",
        &gt,
        "--labels",
        "3,4",
        "--no-distances",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: --labels: label value(s) 4 occur in no file"),
        "{stderr}"
    );
    assert!(stderr.contains(&pred) && stderr.contains(&gt), "{stderr}");
    let o = seglab(&[
        "--pred",
        &pred,
        "--gt",
        &gt,
        "--regions",
        "WT=1,2,3,X=9",
        "--no-distances",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("--regions X: label value(s) 9"), "{stderr}");
}
