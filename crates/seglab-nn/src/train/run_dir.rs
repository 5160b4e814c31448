//! The run folder: its files, creating it or checking it on resume, and the per-epoch metrics files.

use std::path::{Path, PathBuf};

use super::checkpoint::{read_checkpoint, CheckpointMeta};
use super::TrainConfig;
use crate::data::{self, Split};
use crate::error::{Error, Result};
use crate::record::{Cell, EpochRecord};

/// Where and how a run is persisted.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// Continue from `last.ckpt` in `path` (or start there if the run was killed before its first checkpoint).
    pub resume: bool,
    /// Return after this many epochs have been completed in total, as if killed after that checkpoint (tests and
    /// time-boxed sessions use it; the outcome then covers the epochs done so far).
    pub stop_after: Option<usize>,
}

pub const CONFIG_FILE: &str = "config.json";
pub const SPLIT_FILE: &str = "split.json";
pub const LAST_CKPT: &str = "last.ckpt";
pub const BEST_CKPT: &str = "best.ckpt";
pub const OUTCOME_FILE: &str = "outcome.json";
/// Held by the process that writes a run folder (or a compare folder): its PID.
pub const LOCK_FILE: &str = ".seglab.lock";

/// The write lock of a folder: created with `create_new` (atomic), removed on drop. A lock whose process is gone
/// (killed) is stale and taken over, so a kill never locks a folder forever; on Linux liveness is read from `/proc`,
/// elsewhere a lock is trusted until removed by hand.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
}

/// Temporary files of atomic writes left by a killed writer (`.seglab-partial-<pid>-...`, see
/// `seglab_metrics::io`): whoever holds the folder's lock is its only writer, so a partial file of another process is
/// garbage. Never a complete file: those are renamed into place before anything else happens.
fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id().to_string();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(".seglab-partial-") {
            if rest.split('-').next() != Some(me.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl FolderLock {
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        use std::io::Write;
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(|e| Error::file(&path, e))?;
                    remove_stale_partials(dir);
                    return Ok(FolderLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if process_alive(pid) => {
                            return Err(Error::run(
                                dir,
                                format!(
                                    "in use by process {pid} (another seglab train or compare writes this folder; \
                                     {LOCK_FILE} names it)"
                                ),
                            ))
                        }
                        // Stale: its process is gone.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(Error::file(&path, e)),
            }
        }
        Err(Error::run(dir, "cannot take the folder's lock"))
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Writes `bytes` through a temporary file beside `path` and a rename (`seglab_metrics::io`'s writer), so a reader or
/// a killed run never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    seglab_metrics::io::write_bytes_atomic(path, bytes).map_err(Error::from)
}

/// The top-level config keys in which two configs differ (`epochs` aside: raising it continues a run).
pub(super) fn config_differences(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    let (Some(ma), Some(mb)) = (va.as_object(), vb.as_object()) else {
        return vec![];
    };
    ma.iter()
        .filter(|(k, v)| k.as_str() != "epochs" && mb.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Creates the run folder (fresh run) or checks it against the config (resume). Returns the checkpoint to resume
/// from, if any.
pub(super) fn prepare_run_dir(
    cfg: &TrainConfig,
    split: &Split,
    run: &RunDir,
) -> Result<Option<(CheckpointMeta, Vec<u8>, Vec<u8>)>> {
    let dir = &run.path;
    let config_path = dir.join(CONFIG_FILE);
    if run.resume {
        if !config_path.is_file() {
            return Err(Error::run(
                &dir,
                format!("no run to resume (missing {CONFIG_FILE})"),
            ));
        }
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| Error::file(&config_path, e))?;
        let stored: TrainConfig = serde_json::from_str(&text)
            .map_err(|e| Error::run(&config_path, format!("unreadable run config ({e})")))?;
        let diff = config_differences(&stored, cfg);
        if !diff.is_empty() {
            return Err(Error::run(&dir, format!("resumed with a different config (differs in: {}); use the run's own settings or a new run folder", diff.join(", "))));
        }
        let split_path = dir.join(SPLIT_FILE);
        let stored_split = data::read_split(&split_path)?;
        if &stored_split != split {
            return Err(Error::run(&split_path, "resumed with a different split"));
        }
        // Raising `epochs` is allowed: record the new target.
        write_atomic(
            &config_path,
            serde_json::to_string_pretty(cfg).unwrap().as_bytes(),
        )?;
        let ckpt = dir.join(LAST_CKPT);
        if !ckpt.is_file() {
            return Ok(None);
        }
        let (meta, model, optim) = read_checkpoint(&ckpt)?;
        if !config_differences(&meta.config, cfg).is_empty() || &meta.split != split {
            return Err(Error::run(
                &ckpt,
                "checkpoint does not belong to this run's config",
            ));
        }
        if meta.state.records.len() > cfg.epochs {
            return Err(Error::run(
                &ckpt,
                format!(
                    "already trained {} epochs, more than the {} epochs asked for",
                    meta.state.records.len(),
                    cfg.epochs
                ),
            ));
        }
        // Metrics files follow the checkpoint: rows written after it (killed mid-write) are dropped.
        write_metrics(dir, &meta.state.records)?;
        return Ok(Some((meta, model, optim)));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.any(|e| e.map_or(true, |e| e.file_name() != LOCK_FILE)))
            .unwrap_or(true)
    {
        return Err(Error::run(
            &dir,
            "run folder exists and is not empty (resume it, or choose another folder)",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(&dir, e))?;
    write_atomic(
        &dir.join(SPLIT_FILE),
        serde_json::to_string_pretty(split).unwrap().as_bytes(),
    )?;
    // The config goes last: its presence marks a complete run folder that `--resume` accepts.
    write_atomic(
        &config_path,
        serde_json::to_string_pretty(cfg).unwrap().as_bytes(),
    )?;
    Ok(None)
}

/// `metrics.jsonl` (one object per epoch; undefined values are null) and `metrics.csv` (same fields, `epoch` first,
/// then the others in name order; undefined values are empty), rewritten whole.
pub(super) fn write_metrics(dir: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut columns = EpochRecord::COLUMNS.to_vec();
    columns.sort_by_key(|(name, _)| *name);
    let mut jsonl = String::new();
    let mut csv = String::new();
    if !records.is_empty() {
        csv += "epoch";
        for (name, _) in &columns {
            csv += ",";
            csv += name;
        }
        csv.push('\n');
    }
    for r in records {
        jsonl += &serde_json::to_string(r).unwrap();
        jsonl.push('\n');
        csv += &r.epoch.to_string();
        for (_, cell) in &columns {
            csv += ",";
            // Numbers as JSON writes them; undefined and non-finite values (JSON null) are empty cells, which CSV
            // readers take as missing.
            match cell(r) {
                Cell::Number(x) => {
                    let v = serde_json::Value::from(x);
                    if !v.is_null() {
                        csv += &v.to_string();
                    }
                }
                Cell::Count(n) => csv += &n.to_string(),
                Cell::Missing => {}
            }
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.jsonl"), jsonl.as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())
}
