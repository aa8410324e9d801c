use std::path::PathBuf;

use blockvault_core::{ChunkId, DiskName, VmName};
use jiff::Timestamp;

/// What can go wrong on the data path: writing a point into a repository, copying one between
/// repositories, reading or restoring one, verifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] blockvault_store::Error),

    #[error(transparent)]
    Disk(#[from] blockvault_source::Error),

    /// The write guard refused or lost the right to write (see [`WriteGuard`](crate::WriteGuard));
    /// its own error, which its implementation (the vault's leases) knows how to read back.
    #[error(transparent)]
    Guard(Box<dyn std::error::Error + Send + Sync>),

    /// An in-place restore that failed once it had begun rewriting a disk.
    #[error(
        "{source}; disk {disk} was already partly rewritten in place and now matches neither \
         its content before nor the point: restore the point again once that block reads (from \
         the other tier, or after a repair), or into another directory"
    )]
    InPlacePartial {
        disk: DiskName,
        #[source]
        source: Box<Error>,
    },

    /// An encrypted vault whose key could not be unlocked (see [`Keyring`](crate::Keyring)):
    /// the unlocker's error, which says why (a wrong passphrase, none given, a key file
    /// missing).
    #[error("cannot open encrypted vault {vault}: {source}")]
    Locked {
        vault: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("a backup needs at least one disk")]
    NoDisks,

    #[error("the file name of {path} is not usable as a disk name: {source}")]
    DiskName {
        path: PathBuf,
        #[source]
        source: blockvault_core::Error,
    },

    #[error(
        "disks {first} and {second} share the name {name}; a VM's disks need distinct file names"
    )]
    DuplicateDiskName {
        name: DiskName,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("VM {vm} has no recovery points in this vault")]
    UnknownVm { vm: VmName },

    #[error("VM {vm} has no point {point}")]
    UnknownPoint { vm: VmName, point: String },

    #[error("point id {prefix} of VM {vm} is ambiguous: {count} points start with it")]
    AmbiguousPoint {
        vm: VmName,
        prefix: String,
        count: usize,
    },

    #[error("VM {vm} has no point at or before {at}; its first point is at {first}")]
    NoPointAtOrBefore {
        vm: VmName,
        at: Timestamp,
        first: Timestamp,
    },

    #[error(
        "cannot restore disk {disk}: block {index} at byte offset {offset} (chunk {id}): {source}"
    )]
    Block {
        disk: DiskName,
        index: usize,
        offset: u64,
        id: ChunkId,
        #[source]
        source: Box<blockvault_store::Error>,
    },

    #[error(
        "cannot restore disk {disk}: block {index} at byte offset {offset} decodes to {actual} \
         bytes, its block map says {expected}"
    )]
    BlockLength {
        disk: DiskName,
        index: usize,
        offset: u64,
        expected: usize,
        actual: usize,
    },

    /// A read of a point outside its disks (see [`PointReader::read_at`](crate::PointReader)).
    #[error("point {point} has no disk {disk}, or no byte range {offset}+{len} in it")]
    OutOfRange {
        point: String,
        disk: usize,
        offset: u64,
        len: usize,
    },

    #[error("{path} already exists; pass --force to replace it")]
    TargetExists { path: PathBuf },

    #[error("{path} exists and is not a file; a restore writes each disk as an image file")]
    TargetNotAFile { path: PathBuf },

    /// An in-place restore needs every disk of the point to exist in the target directory.
    #[error(
        "cannot restore in place: {path} does not exist (an in-place restore writes over an \
         existing image of every disk of the point); nothing was written"
    )]
    TargetMissing { path: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the upload stage stopped; see the error that stopped it")]
    UploadStopped,

    /// An early send whose repository never opened (see `EarlySend::when_open`).
    #[error("the vault did not open, so nothing was sent early")]
    NotOpened,
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Error {
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
            Error::Store(e) => e.kind(),
            Error::Disk(e) => e.kind(),
            Error::Block { source, .. } => source.kind(),
            Error::BlockLength { .. } => ErrorKind::Integrity,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::InPlacePartial { source, .. } => source.kind(),
            Error::UnknownVm { .. }
            | Error::UnknownPoint { .. }
            | Error::NoPointAtOrBefore { .. } => ErrorKind::NotFound,
            Error::NoDisks
            | Error::DiskName { .. }
            | Error::DuplicateDiskName { .. }
            | Error::AmbiguousPoint { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failure,
        }
    }
}
