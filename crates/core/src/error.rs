/// Everything that can be wrong with a blockvault value or encoded object.
///
/// `what` names the kind of object being decoded ("block map", "chunk", "recovery point",
/// "vault config"), so a caller can add the key or offset and still print one clear line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a blockvault {what} (wrong magic number)")]
    BadMagic { what: &'static str },

    #[error("{what} has format version {version}; this build reads versions up to {supported}")]
    UnsupportedVersion {
        what: &'static str,
        version: u16,
        supported: u16,
    },

    #[error("{what} is encrypted with scheme {scheme}, which this build cannot read")]
    UnsupportedEncryption { what: &'static str, scheme: u8 },

    #[error(
        "{what} failed authentication: it was altered, moved from another object, or sealed \
         under another key"
    )]
    AuthenticationFailed { what: &'static str },

    #[error(
        "{what} is not encrypted, but its vault is: no holder of the vault's key wrote it, so \
         it is not trusted"
    )]
    NotEncrypted { what: &'static str },

    #[error("{what} is encrypted, but its vault's config says the vault is not")]
    Encrypted { what: &'static str },

    #[error("the passphrase opens none of the vault's {slots} key slot(s)")]
    WrongPassphrase { slots: usize },

    #[error("the key given is key {actual}, but the vault is encrypted with key {expected}")]
    WrongKey { expected: String, actual: String },

    #[error("{what} checksum mismatch: the data is corrupt")]
    ChecksumMismatch { what: &'static str },

    #[error("{what} is truncated: expected {expected} bytes, found {actual}")]
    Truncated {
        what: &'static str,
        expected: u64,
        actual: u64,
    },

    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },

    #[error("chunk content does not match its id: expected {expected}, content hashes to {actual}")]
    /// The ids in hex (an id's `Display`).
    IdMismatch { expected: String, actual: String },

    #[error("invalid block size {value:?}: {reason}")]
    InvalidBlockSize { value: String, reason: String },

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is, for a front end to act on (the CLI's exit codes) without
/// knowing every crate's error variants: each crate's `Error::kind` says it, looking through
/// the errors it wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong: a bad argument, name, block size or combination.
    Usage,
    /// What the request names is not there: a disk, a vault, a VM, a point, a job, a policy.
    NotFound,
    /// Stored data failed its integrity checks (corrupt, or a chunk or map a point names is
    /// missing).
    Integrity,
    /// The state of the vault does not allow the operation (changing the redundancy of a vault
    /// that holds backup items; promoting a replica whose primary still holds the vault; a VM
    /// protected by another vault, soft-deleted or stopped; a policy in use or already there).
    Refused,
    /// An encrypted vault that no key given opens: a wrong passphrase, no passphrase given (no
    /// `BLOCKVAULT_PASSWORD_FILE`, `BLOCKVAULT_PASSWORD_COMMAND` or terminal), or its key
    /// file missing.
    Locked,
    /// Anything else: I/O, an unreachable store, a failed hook.
    Failure,
}

impl ErrorKind {
    /// The kind's stable name (`usage`, `not-found`, `integrity`, `refused`, `locked`, `failure`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Refused => "refused",
            ErrorKind::Locked => "locked",
            ErrorKind::Failure => "failure",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error. A value error reaching a front end on its own is one the user
    /// gave (a name, a block size, a setting); a stored object that fails to decode comes
    /// wrapped in its store's error, which says it is an integrity failure. A wrong passphrase
    /// or key is [`ErrorKind::Locked`], an object that fails authentication
    /// [`ErrorKind::Integrity`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::WrongPassphrase { .. } | Error::WrongKey { .. } => ErrorKind::Locked,
            Error::AuthenticationFailed { .. }
            | Error::NotEncrypted { .. }
            | Error::Encrypted { .. } => ErrorKind::Integrity,
            _ => ErrorKind::Usage,
        }
    }
}
