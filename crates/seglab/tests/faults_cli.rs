//! Faults (issue 22): a training killed with SIGKILL at ten moments resumes to the records of an uninterrupted run;
//! a full disk (RLIMIT_FSIZE with SIGXFSZ ignored: writes fail with EFBIG, as on a full file system) and an unwritable
//! output folder give one line, exit 2 and no partial file, for evaluate, predict, train and compare.
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_seglab");

fn tiny_train(out: &Path, resume: bool) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "train",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "40",
        "--phantom-count",
        "24",
        "--size",
        "32",
        "--depth",
        "2",
        "--base-width",
        "4",
        "--batch-size",
        "4",
        "--quiet",
    ]);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Epoch records without their wall-clock field.
fn records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

fn epochs_done(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn ten_sigkills_resume_to_the_uninterrupted_records() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref");
    let o = tiny_train(&reference, false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("run");
    let mut rng = seglab_metrics::rng::SplitMix64::new(22);
    let (mut kills, mut attempts) = (0, 0);
    let mut epochs_at_kill = Vec::new();
    while kills < 10 {
        attempts += 1;
        assert!(attempts < 200, "could not deliver 10 kills");
        let resume = run.join("config.json").is_file();
        if !resume && run.exists() {
            // Killed before the run folder held a config: nothing to resume, nothing lost.
            std::fs::remove_dir_all(&run).unwrap();
        }
        let mut child = tiny_train(&run, resume).spawn().unwrap();
        // Wait for one more finished epoch (so the run advances whatever the machine's speed), then kill at a
        // random moment of the following epochs: in a step, in validation or while a checkpoint is written.
        let before = epochs_done(&run);
        while epochs_done(&run) <= before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.below(60) as u64));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            epochs_at_kill.push(epochs_done(&run));
        } else {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            break;
        }
    }
    println!("{kills} kills in {attempts} attempts, epochs done at each: {epochs_at_kill:?}");
    assert_eq!(kills, 10, "the run finished before the tenth kill");
    // The kills fell at different stages of the run, most of them after its first checkpoint.
    let mut stages = epochs_at_kill.clone();
    stages.dedup();
    assert!(
        stages.len() >= 4 && epochs_at_kill.iter().all(|&e| e > 0),
        "{epochs_at_kill:?}"
    );
    // Finish the run (every kill left a readable checkpoint: a corrupt one would fail this resume).
    let o = tiny_train(&run, run.join("config.json").is_file())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(records(&run), records(&reference), "after {kills} kills");
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `args` with file writes limited to `blocks` x 512 bytes (SIGXFSZ ignored: writes then fail with EFBIG).
fn with_full_disk(args: &[&str], blocks: u32) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f {blocks}; trap '' XFSZ; exec '{BIN}' {}",
            quoted.join(" ")
        ))
        .output()
        .unwrap()
}

/// Exit 2 and one error line (informational lines such as train's data summary may precede it).
fn one_line_exit_2(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.trim().lines().last(), Some(errors[0]), "{err}");
    assert!(errors[0].contains(needle), "{err} lacks {needle}");
}

fn no_partial_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.contains("partial"), "{}", e.path().display());
        if e.path().is_dir() {
            no_partial_files(&e.path());
        }
    }
}

#[test]
fn a_full_disk_and_an_unwritable_folder_are_one_line_and_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(Command::new(BIN)
        .args([
            "synth",
            data.to_str().unwrap(),
            "--count",
            "8",
            "--size",
            "64"
        ])
        .output()
        .unwrap()
        .status
        .success());
    let (masks, images) = (data.join("masks"), data.join("images"));
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let json = out_dir.join("eval.json");
    // evaluate: the JSON (tens of kB) does not fit in 4 KiB.
    let o = with_full_disk(
        &[
            "evaluate",
            "--pred",
            masks.to_str().unwrap(),
            "--gt",
            masks.to_str().unwrap(),
            "--out",
            json.to_str().unwrap(),
        ],
        8,
    );
    one_line_exit_2(&o, "cannot write");
    assert!(!json.exists());
    no_partial_files(&out_dir);
    // train: the first checkpoint does not fit; the run folder keeps no partial file.
    let run = out_dir.join("run");
    let o = with_full_disk(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--epochs",
            "1",
            "--size",
            "32",
            "--depth",
            "2",
            "--base-width",
            "4",
            "--quiet",
        ],
        8,
    );
    one_line_exit_2(&o, "cannot write");
    no_partial_files(&out_dir);
    // predict with a model trained with room to write.
    let model = tmp.path().join("model");
    let o = Command::new(BIN)
        .args([
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--epochs",
            "1",
            "--size",
            "32",
            "--depth",
            "2",
            "--base-width",
            "4",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pred = out_dir.join("pred");
    let o = with_full_disk(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            images.to_str().unwrap(),
            "--out",
            pred.to_str().unwrap(),
            "--save-probabilities",
        ],
        4,
    );
    one_line_exit_2(&o, "cannot write");
    no_partial_files(&out_dir);
    // compare: its plan and runs do not fit.
    let report = out_dir.join("report");
    let o = with_full_disk(
        &[
            "compare",
            "--predictions",
            &format!("a={}", masks.display()),
            "--predictions",
            &format!("b={}", masks.display()),
            "--gt",
            masks.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ],
        4,
    );
    one_line_exit_2(&o, "cannot write");
    assert!(!report.join("index.html").exists() && !report.join("summary.json").exists());
    no_partial_files(&out_dir);

    // An output folder nobody can write to: /proc refuses new files even to root.
    let o = Command::new(BIN)
        .args([
            "evaluate",
            "--pred",
            masks.to_str().unwrap(),
            "--gt",
            masks.to_str().unwrap(),
            "--out",
            "/proc/seglab-test/eval.json",
        ])
        .output()
        .unwrap();
    one_line_exit_2(&o, "/proc/seglab-test/eval.json");
    let o = Command::new(BIN)
        .args([
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            "/proc/seglab-test-run",
            "--epochs",
            "1",
            "--size",
            "32",
            "--depth",
            "2",
            "--base-width",
            "4",
            "--quiet",
        ])
        .output()
        .unwrap();
    one_line_exit_2(&o, "/proc/seglab-test-run");
    let o = Command::new(BIN)
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--input",
            images.to_str().unwrap(),
            "--out",
            "/proc/seglab-test-pred",
        ])
        .output()
        .unwrap();
    one_line_exit_2(&o, "/proc/seglab-test-pred");
}
