use std::path::PathBuf;

use blockvault_core::{ChunkId, DiskName, VmName};
use jiff::Timestamp;

/// What can go wrong backing up into or restoring out of a vault. The data path's errors
/// ([`blockvault_repo::Error`]) come out as the variant of the same name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] blockvault_store::Error),

    #[error(transparent)]
    Disk(#[from] blockvault_source::Error),

    #[error(
        "{holder} lost its lease on the vault (not renewed for {since:?}: the process was \
         paused or the store unreachable), so others may have acted meanwhile; it stopped \
         before acting on what it knew (a backup commits nothing, a collection deletes no \
         more); run it again"
    )]
    LeaseLost {
        holder: String,
        since: std::time::Duration,
    },

    #[error("garbage collection stopped before deleting anything: {source}")]
    GcMark {
        #[source]
        source: Box<Error>,
    },

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

    #[error(
        "garbage collection deleted nothing: after {waited:?} these still held the vault: {}; \
         run it again later or with a longer --wait",
        holders.join("; ")
    )]
    GcBlocked {
        waited: std::time::Duration,
        holders: Vec<String>,
    },

    #[error("grace period {grace:?} is too long")]
    GcGrace { grace: std::time::Duration },

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

    /// The redundancy of a vault that holds backup items cannot change.
    #[error(
        "redundancy is chosen before the first backup: vault {location} holds backup items for \
         VM(s) {}; it stays {redundancy}. Nothing was changed; to use another redundancy, \
         create a new vault with it and back the VMs up there",
        vm_list(vms)
    )]
    RedundancyFixed {
        location: String,
        redundancy: blockvault_core::Redundancy,
        vms: Vec<VmName>,
    },

    /// A location that cannot become a vault's secondary.
    #[error(
        "{location} cannot become the secondary of vault {vault}: {reason}. A new secondary \
         must be an empty or new location, or this vault's replica (to resume or mend it); \
         nothing was changed"
    )]
    SecondaryTarget {
        location: String,
        vault: String,
        reason: String,
    },

    /// `promote` of a location that is not a replica.
    #[error(
        "{location} holds vault {vault} ({redundancy}), not the replica of another vault: there \
         is nothing to promote; nothing was changed"
    )]
    NotAReplica {
        location: String,
        vault: String,
        redundancy: blockvault_core::Redundancy,
    },

    /// `promote` while the primary still holds the vault.
    #[error(
        "the primary of {location}, vault {vault} at {primary}, is still there{}: promoting the \
         replica would make two vaults with one id. Restore from the replica as it is \
         (`--vault {location}`) without promoting it; promote it (--force) only once the \
         primary is lost for good or will never be used again. Nothing was changed",
        match secondary {
            Some(s) if s == location => " and still replicates to it".to_owned(),
            Some(s) => format!(" (replicating to {s} now)"),
            None => " (no longer replicated)".to_owned(),
        }
    )]
    PrimaryStillThere {
        location: String,
        primary: String,
        vault: String,
        secondary: Option<String>,
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

    /// A read of a point outside its disks (see [`PointReader::read_at`](crate::PointReader)).
    #[error("point {point} has no disk {disk}, or no byte range {offset}+{len} in it")]
    OutOfRange {
        point: String,
        disk: usize,
        offset: u64,
        len: usize,
    },

    /// A write guard's error that is not the vault's own (a guard other than its leases).
    #[error(transparent)]
    Guard(Box<dyn std::error::Error + Send + Sync>),

    #[error("the upload stage stopped; see the error that stopped it")]
    UploadStopped,

    /// An early send whose vault never opened (see `EarlySend::when_open`).
    #[error("the vault did not open, so nothing was sent early")]
    NotOpened,
}

fn vm_list(vms: &[VmName]) -> String {
    vms.iter()
        .map(VmName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<blockvault_repo::Error> for Error {
    fn from(e: blockvault_repo::Error) -> Error {
        use blockvault_repo::Error as R;
        match e {
            R::Store(e) => Error::Store(e),
            R::Disk(e) => Error::Disk(e),
            // The vault's guard carries the vault's own errors (a lost lease).
            R::Guard(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::Guard(e),
            },
            R::InPlacePartial { disk, source } => Error::InPlacePartial {
                disk,
                source: Box::new(Error::from(*source)),
            },
            R::NoDisks => Error::NoDisks,
            R::DiskName { path, source } => Error::DiskName { path, source },
            R::DuplicateDiskName {
                name,
                first,
                second,
            } => Error::DuplicateDiskName {
                name,
                first,
                second,
            },
            R::UnknownVm { vm } => Error::UnknownVm { vm },
            R::UnknownPoint { vm, point } => Error::UnknownPoint { vm, point },
            R::AmbiguousPoint { vm, prefix, count } => Error::AmbiguousPoint { vm, prefix, count },
            R::NoPointAtOrBefore { vm, at, first } => Error::NoPointAtOrBefore { vm, at, first },
            R::Block {
                disk,
                index,
                offset,
                id,
                source,
            } => Error::Block {
                disk,
                index,
                offset,
                id,
                source,
            },
            R::BlockLength {
                disk,
                index,
                offset,
                expected,
                actual,
            } => Error::BlockLength {
                disk,
                index,
                offset,
                expected,
                actual,
            },
            R::OutOfRange {
                point,
                disk,
                offset,
                len,
            } => Error::OutOfRange {
                point,
                disk,
                offset,
                len,
            },
            R::TargetExists { path } => Error::TargetExists { path },
            R::TargetNotAFile { path } => Error::TargetNotAFile { path },
            R::TargetMissing { path } => Error::TargetMissing { path },
            R::Io { path, source } => Error::Io { path, source },
            R::UploadStopped => Error::UploadStopped,
            R::NotOpened => Error::NotOpened,
            // A variant this build does not know yet.
            other => Error::Guard(Box::new(other)),
        }
    }
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
    /// The kind of this error (see [`ErrorKind`](blockvault_core::ErrorKind)), looking through
    /// the store and disk errors it wraps.
    pub fn kind(&self) -> blockvault_core::ErrorKind {
        use blockvault_core::ErrorKind;
        match self {
            Error::Store(e) => e.kind(),
            Error::Disk(e) => e.kind(),
            Error::Block { source, .. } => source.kind(),
            Error::BlockLength { .. } => ErrorKind::Integrity,
            Error::GcMark { source } | Error::InPlacePartial { source, .. } => source.kind(),
            Error::RedundancyFixed { .. }
            | Error::NotAReplica { .. }
            | Error::PrimaryStillThere { .. } => ErrorKind::Refused,
            Error::SecondaryTarget { .. } => ErrorKind::Usage,
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
