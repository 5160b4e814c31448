//! `seglab evaluate --shard I/N --cases-out` + `seglab merge`: the merged output is the unsharded run's, byte for byte,
//! with and without a sweep; incomplete or mixed parts are refused with one line and exit 2.
use std::path::Path;
use std::process::{Command, Output};

use seglab_metrics::io::{write_npy, NpyData};

fn seglab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seglab"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn folders(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("pred")).unwrap();
    std::fs::create_dir_all(dir.join("gt")).unwrap();
    for k in 0..n {
        let side = 24;
        let gt: Vec<bool> = (0..side * side)
            .map(|i| (i / side) % 12 > 2 + k % 4 && (i % side) % 9 > 3)
            .collect();
        let p: Vec<f32> = (0..side * side)
            .map(|i| {
                if gt[(i + k) % (side * side)] {
                    0.3 + 0.05 * (k % 9) as f32
                } else {
                    0.1
                }
            })
            .collect();
        write_npy(
            &dir.join(format!("gt/c{k:02}.npy")),
            &[side, side],
            NpyData::Bool(&gt),
        )
        .unwrap();
        write_npy(
            &dir.join(format!("pred/c{k:02}.npy")),
            &[side, side],
            NpyData::F32(&p),
        )
        .unwrap();
    }
}

#[test]
fn merged_shards_are_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    folders(tmp.path(), 11);
    let (pred, gt) = (tmp.path().join("pred"), tmp.path().join("gt"));
    for extra in [vec![], vec!["--sweep", "--threshold", "0.35"]] {
        let whole = tmp.path().join("whole.json");
        let mut args = vec![
            "evaluate",
            "--pred",
            s(&pred),
            "--gt",
            s(&gt),
            "--out",
            s(&whole),
        ];
        args.extend(&extra);
        let o = seglab(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut parts = Vec::new();
        for i in 0..3 {
            let part = tmp.path().join(format!("part{i}.jsonl"));
            let shard = format!("{i}/3");
            let mut args = vec![
                "evaluate",
                "--pred",
                s(&pred),
                "--gt",
                s(&gt),
                "--shard",
                &shard,
                "--cases-out",
                s(&part),
            ];
            args.extend(&extra);
            let o = seglab(&args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            parts.push(part);
        }
        // A part holds a header and its cases only.
        let lines = std::fs::read_to_string(&parts[1]).unwrap().lines().count();
        assert_eq!(lines, 1 + 4, "shard 1/3 of 11 pairs: 1, 4, 7, 10");
        let merged = tmp.path().join("merged.json");
        let mut args = vec!["merge", "--out", s(&merged)];
        // Any order of parts.
        args.extend([s(&parts[2]), s(&parts[0]), s(&parts[1])]);
        let o = seglab(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            std::fs::read(&merged).unwrap(),
            std::fs::read(&whole).unwrap(),
            "{extra:?}"
        );
        std::fs::remove_file(&merged).unwrap();
    }
    // A missing part, a part given twice, parts of other settings: refused, nothing written.
    let merged = tmp.path().join("merged.json");
    let refuse = |args: &[&str], needle: &str| {
        let o = seglab(args);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!merged.exists());
    };
    let p = |i: usize| tmp.path().join(format!("part{i}.jsonl"));
    refuse(
        &["merge", "--out", s(&merged), s(&p(0)), s(&p(1))],
        "shard(s) 2/3 of 3 missing",
    );
    refuse(
        &["merge", "--out", s(&merged), s(&p(0)), s(&p(0)), s(&p(1))],
        "is given twice",
    );
    let other = tmp.path().join("other.jsonl");
    let o = seglab(&[
        "evaluate",
        "--pred",
        s(&pred),
        "--gt",
        s(&gt),
        "--shard",
        "2/3",
        "--cases-out",
        s(&other),
    ]);
    assert!(o.status.success());
    refuse(
        &["merge", "--out", s(&merged), s(&p(0)), s(&p(1)), s(&other)],
        "made with other settings",
    );
    refuse(
        &[
            "evaluate",
            "--pred",
            s(&pred),
            "--gt",
            s(&gt),
            "--shard",
            "3/3",
            "--cases-out",
            s(&other),
        ],
        "--shard 3/3",
    );
}
