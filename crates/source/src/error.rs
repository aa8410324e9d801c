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

    #[error("{uri} is not a usable NBD address: {reason}")]
    NbdUri { uri: String, reason: String },

    #[error("cannot connect to NBD server {export}: {source}")]
    NbdConnect {
        export: String,
        #[source]
        source: std::io::Error,
    },

    #[error("NBD server {export} has no such export (list its exports with `nbdinfo --list`)")]
    NbdNoExport { export: String },

    /// The server broke the protocol, stalled or went away: the connection is unusable.
    #[error("NBD export {export}: {reason}")]
    Nbd { export: String, reason: String },

    /// The server answered a request with an error; the connection is still usable.
    #[error("NBD export {export}: the server failed the {length}-byte request at byte {offset}: {errno_name} ({errno}){message}", errno_name = crate::nbd::errno_name(*errno), message = if message.is_empty() { String::new() } else { format!(": {message}") })]
    NbdServer {
        export: String,
        /// Where the request failed (the byte an error chunk names, or the request's start).
        offset: u64,
        /// The request's bytes from `offset` on.
        length: u64,
        errno: u32,
        message: String,
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
            Error::NotFound { .. } | Error::NbdNoExport { .. } => ErrorKind::NotFound,
            Error::NotADisk { .. } | Error::NbdUri { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failure,
        }
    }
}
