use crate::ChunkId;

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
    IdMismatch { expected: ChunkId, actual: ChunkId },

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
