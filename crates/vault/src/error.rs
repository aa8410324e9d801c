use std::path::PathBuf;

use blockvault_core::VmName;

/// What can go wrong backing up into or restoring out of a vault. The data path's errors come
/// out as [`Error::Repo`] (their store and disk errors as [`Error::Store`] and [`Error::Disk`]).
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

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A write guard's error that is not the vault's own (a guard other than its leases).
    /// An error of the data path (`blockvault-repo`), as it is.
    #[error(transparent)]
    Repo(blockvault_repo::Error),

    #[error(transparent)]
    Guard(Box<dyn std::error::Error + Send + Sync>),
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
            other => Error::Repo(other),
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
            Error::Repo(e) => e.kind(),
            Error::GcMark { source } => source.kind(),
            Error::RedundancyFixed { .. }
            | Error::NotAReplica { .. }
            | Error::PrimaryStillThere { .. } => ErrorKind::Refused,
            Error::SecondaryTarget { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failure,
        }
    }
}
