use std::path::PathBuf;

/// What can go wrong reading a disk image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("disk image {path} does not exist")]
    NotFound { path: PathBuf },

    #[error("{path} is {kind}, not a disk image (expected a regular file or a block device)")]
    NotADisk { path: PathBuf, kind: &'static str },

    #[error("cannot read disk image {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "disk image {path} changed size while it was read ({before} bytes, then {after}); \
         nothing was committed, try again once the disk is stable"
    )]
    SizeChanged {
        path: PathBuf,
        before: u64,
        after: u64,
    },

    #[error(
        "disk image {path} ended at byte {offset} while it was read, short of its {size}-byte \
         size (truncated during the read?); nothing was committed"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        size: u64,
    },

    #[error(transparent)]
    Format(#[from] blockvault_core::Error),
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
        use blockvault_core::ErrorKind;
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::NotADisk { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failure,
        }
    }
}
