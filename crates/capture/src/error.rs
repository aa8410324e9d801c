use std::path::{Path, PathBuf};

use blockvault_core::ErrorKind;

/// What can go wrong capturing a disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file system cannot clone here: no reflinks (ext4, XFS without `reflink=1`), or the
    /// clone would cross file systems.
    #[error("cannot clone {src} to {dst}: {why}")]
    Unsupported {
        src: PathBuf,
        dst: PathBuf,
        why: String,
    },

    #[error("cannot read the extent map of {path}: {source}")]
    Fiemap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn fiemap(path: &Path, e: rustix::io::Errno) -> Error {
        Error::Fiemap {
            path: path.to_owned(),
            source: e.into(),
        }
    }

    /// A failed clone: "unsupported" for the errnos that mean the file system cannot do it.
    pub(crate) fn clone(src: &Path, dst: &Path, e: rustix::io::Errno) -> Error {
        use rustix::io::Errno;
        let why = match e {
            Errno::XDEV => Some("they are on different file systems"),
            Errno::OPNOTSUPP => Some("the file system has no reflinks"),
            Errno::INVAL => Some(
                "the file system refused the clone (no reflinks, or the files differ in \
                 nodatacow)",
            ),
            _ => None,
        };
        match why {
            Some(why) => Error::Unsupported {
                src: src.to_owned(),
                dst: dst.to_owned(),
                why: why.to_owned(),
            },
            None => Error::Io {
                path: dst.to_owned(),
                source: e.into(),
            },
        }
    }

    /// Whether the capture should fall back to reading the disk (the file system cannot clone).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } | Error::Fiemap { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Failure,
        }
    }
}
