use blockvault_core::{ChunkId, DiskName, PointId, VmName};

/// What can go wrong storing or loading vault objects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{location} is not a blockvault vault ({reason}); create one with `blockvault vault init`"
    )]
    NotAVault { location: String, reason: String },

    #[error(
        "{location}: the bucket does not exist (NoSuchBucket); create it on the object store first"
    )]
    BucketMissing { location: String },

    #[error("{location} already holds a vault")]
    AlreadyAVault { location: String },

    #[error("{location} is not empty; a new vault needs an empty or new directory")]
    NotEmpty { location: String },

    #[error("chunk {id} is missing from the vault")]
    ChunkMissing { id: ChunkId },

    #[error("chunk {id} is corrupt: {source}")]
    ChunkCorrupt {
        id: ChunkId,
        #[source]
        source: blockvault_core::Error,
    },

    #[error("block map of disk {disk} in point {point} of VM {vm} is missing")]
    MapMissing {
        vm: VmName,
        point: PointId,
        disk: DiskName,
    },

    #[error("block map of disk {disk} in point {point} of VM {vm} is corrupt: {reason}")]
    MapCorrupt {
        vm: VmName,
        point: PointId,
        disk: DiskName,
        reason: String,
    },

    #[error("VM {vm} has no point {point} in this vault")]
    PointMissing { vm: VmName, point: PointId },

    #[error(
        "recovery point {point} of VM {vm} is not damaged; only a record that cannot be read \
         is set aside (delete points with retention: `blockvault prune`)"
    )]
    PointNotDamaged { vm: VmName, point: PointId },

    #[error("recovery point {point} of VM {vm} is corrupt: {source}")]
    PointCorrupt {
        vm: VmName,
        point: PointId,
        #[source]
        source: blockvault_core::Error,
    },

    #[error("vault object {key} is corrupt: {source}")]
    ObjectCorrupt {
        key: String,
        #[source]
        source: blockvault_core::Error,
    },

    #[error("soft-delete marker of VM {vm} is corrupt: {source}")]
    SoftDeleteCorrupt {
        vm: VmName,
        #[source]
        source: blockvault_core::Error,
    },

    #[error("soft-delete marker of point {point} of VM {vm} is corrupt: {source}")]
    PointDeleteCorrupt {
        vm: VmName,
        point: PointId,
        #[source]
        source: blockvault_core::Error,
    },

    #[error("vault config at {location} is corrupt: {source}")]
    ConfigCorrupt {
        location: String,
        #[source]
        source: blockvault_core::Error,
    },

    /// A request to the store underneath failed. Said in one line (what was asked, what came
    /// back, what to check: see `request_error.rs`); `error` is not a `source()`, so that
    /// printing the chain does not repeat it with its XML.
    #[error("{}", crate::request_error::message(op, key, error))]
    Backend {
        op: &'static str,
        key: String,
        error: object_store::Error,
    },

    /// A write to one store of a replicated vault failed; `role` is `primary` or `secondary`.
    #[error("{role} store {location}: {source}")]
    InStore {
        role: &'static str,
        location: String,
        #[source]
        source: Box<Error>,
    },

    #[error(
        "secondary store {location} is unavailable ({reason}); a replicated vault writes every \
         object to both stores, so nothing can be written until it is back (restores still \
         read the primary). If it is lost, rebuild it where it was with `blockvault vault \
         resync --vault {primary}`, or give the vault another one with `blockvault vault \
         replace-secondary --vault {primary} NEW_SECONDARY`"
    )]
    SecondaryUnavailable {
        location: String,
        reason: String,
        /// The primary's location, for the hint.
        primary: String,
    },

    /// The primary's copy of an object is missing or corrupt, and so is the secondary's.
    #[error("{primary}; the replica in secondary store {location} is no better: {secondary}")]
    ReplicaAlsoBad {
        primary: Box<Error>,
        location: String,
        secondary: Box<Error>,
    },

    /// A resync wrote an object that the target then did not list as written.
    #[error("resync to {location}: {key} did not land ({reason}); run the resync again")]
    ResyncMismatch {
        location: String,
        key: String,
        reason: String,
    },

    #[error("vault location {location}: {reason}")]
    InvalidLocation { location: String, reason: String },

    #[error("S3 config file {path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },

    /// A setting from the environment that does not parse.
    #[error("S3 setting {name}: {reason}")]
    Setting { name: String, reason: String },

    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error means "the object is not there" (as opposed to unreadable or corrupt).
    pub fn is_missing(&self) -> bool {
        if let Error::ReplicaAlsoBad { primary, .. } = self {
            return primary.is_missing();
        }
        matches!(
            self,
            Error::ChunkMissing { .. } | Error::MapMissing { .. } | Error::PointMissing { .. }
        )
    }

    /// Whether the error means stored data failed its integrity checks.
    pub fn is_corrupt(&self) -> bool {
        if let Error::ReplicaAlsoBad { primary, .. } = self {
            return primary.is_corrupt();
        }
        matches!(
            self,
            Error::ChunkCorrupt { .. }
                | Error::MapCorrupt { .. }
                | Error::PointCorrupt { .. }
                | Error::SoftDeleteCorrupt { .. }
                | Error::PointDeleteCorrupt { .. }
                | Error::ConfigCorrupt { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed request to the object store underneath, naming the operation and the key.
pub(crate) fn backend(
    op: &'static str,
    key: &object_store::path::Path,
    source: object_store::Error,
) -> Error {
    Error::Backend {
        op,
        key: key.to_string(),
        error: source,
    }
}

impl Error {
    /// The kind of this error (see [`ErrorKind`](blockvault_core::ErrorKind)).
    pub fn kind(&self) -> blockvault_core::ErrorKind {
        use blockvault_core::ErrorKind;
        match self {
            Error::NotAVault { .. } | Error::BucketMissing { .. } => ErrorKind::NotFound,
            Error::AlreadyAVault { .. }
            | Error::NotEmpty { .. }
            | Error::InvalidLocation { .. }
            | Error::Config { .. }
            | Error::Setting { .. } => ErrorKind::Usage,
            // A chunk or map that a committed point names is part of the point: its absence
            // is damage to the vault, not a lookup miss.
            Error::ChunkMissing { .. } | Error::MapMissing { .. } => ErrorKind::Integrity,
            Error::PointMissing { .. } => ErrorKind::NotFound,
            Error::ReplicaAlsoBad { primary, .. } => primary.kind(),
            _ if self.is_corrupt() => ErrorKind::Integrity,
            _ => ErrorKind::Failure,
        }
    }
}
