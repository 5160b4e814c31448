//! Atomic writes: a temporary file beside the target, renamed over it.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::*;

/// A unique temporary path beside `path`. It keeps a NIfTI suffix (the NIfTI writer picks compression from it and
/// rewrites everything after the first dot of the stem, so the name has no other dots).
fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let suffix = if lower.ends_with(".nii.gz") {
        ".nii.gz"
    } else if lower.ends_with(".nii") {
        ".nii"
    } else {
        ".tmp"
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(
        ".seglab-partial-{}-{nanos}-{n}{suffix}",
        std::process::id()
    ))
}

/// Run `write` on a temporary path beside `path`, then rename it over `path`; the temporary file is removed on
/// failure, so `path` is either the complete new file or untouched.
pub fn write_atomic_path(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let tmp = temp_path_for(path);
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(detail) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::Write {
            path: path.to_path_buf(),
            detail,
        });
    }
    Ok(())
}

/// Write through a buffered writer to a temporary file, then rename it over `path`.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::result::Result<(), String>,
) -> Result<()> {
    write_atomic_path(path, |tmp| {
        let file = File::create(tmp).map_err(|e| e.to_string())?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())
    })
}

/// Write bytes atomically (JSON, CSV reports).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |out| out.write_all(bytes).map_err(|e| e.to_string()))
}
