//! The errors of data loading and training, typed by what went wrong: a setting out of range names its config key
//! (the CLI shows the flag instead, `seglab/src/commands/train.rs::CONFIG_FLAGS`), data and run-folder problems name
//! the path, I/O errors keep their type. Every message is one line a user can act on.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting out of range or inconsistent: `key` is its config key (`load.size`, `lr`, `augment.patch`, ...).
    #[error("{key} {problem}")]
    Config { key: &'static str, problem: String },
    /// A data folder, data file, embedded set or split that cannot be used; `origin` is its path or name.
    #[error("{origin}: {problem}")]
    Data { origin: String, problem: String },
    /// A run folder or checkpoint that cannot be used.
    #[error("{}: {problem}", path.display())]
    Run { path: PathBuf, problem: String },
    /// Reading or writing a mask or image (seglab-metrics' error, which names the file).
    #[error(transparent)]
    Io(#[from] seglab_metrics::io::IoError),
    /// A file-system operation on `path` failed.
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    /// burn could not serialise a model or optimizer record.
    #[error("{what} record: {detail}")]
    Record { what: &'static str, detail: String },
    /// A device name this build does not have.
    #[error("unknown device '{name}' (this build has: {available})")]
    Device { name: String, available: String },
}

impl Error {
    pub fn config(key: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            key,
            problem: problem.into(),
        }
    }

    pub fn data(origin: impl std::fmt::Display, problem: impl Into<String>) -> Self {
        Error::Data {
            origin: origin.to_string(),
            problem: problem.into(),
        }
    }

    pub fn run(path: &Path, problem: impl Into<String>) -> Self {
        Error::Run {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub fn file(path: &Path, error: std::io::Error) -> Self {
        Error::File {
            path: path.to_path_buf(),
            error,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
