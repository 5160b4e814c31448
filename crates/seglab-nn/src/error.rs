//! The error of data loading and training: one line a user can act on (it names the file or option at fault).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
