use std::path::PathBuf;

/// What can go wrong in the snapshot tier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] blockvault_repo::Error),

    #[error(transparent)]
    Store(#[from] blockvault_store::Error),

    #[error("snapshot tier {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of this error (see [`ErrorKind`](blockvault_core::ErrorKind)).
    pub fn kind(&self) -> blockvault_core::ErrorKind {
        match self {
            Error::Repo(e) => e.kind(),
            Error::Store(e) => e.kind(),
            _ => blockvault_core::ErrorKind::Failure,
        }
    }
}
