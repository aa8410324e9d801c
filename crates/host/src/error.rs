use std::error::Error as StdError;
use std::path::PathBuf;

use blockvault_core::ErrorKind;
use blockvault_jobs::{JobId, PolicyError};

/// What can go wrong on this host, each error with its [`ErrorKind`] ([`Error::kind`]).
///
/// The errors of the crates below pass through unchanged (same message, same sources), so a
/// front end prints them as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Jobs(#[from] blockvault_jobs::Error),

    #[error(transparent)]
    Snapshot(Box<blockvault_snapshot::Error>),

    #[error(transparent)]
    Vault(Box<blockvault_vault::Error>),

    #[error(transparent)]
    Store(Box<blockvault_store::Error>),

    #[error(transparent)]
    Source(#[from] blockvault_source::Error),

    #[error(transparent)]
    Core(#[from] blockvault_core::Error),

    #[error(transparent)]
    Policy(#[from] PolicyError),

    /// A request that cannot be right whatever the state: arguments that contradict each
    /// other, a value missing.
    #[error("{0}")]
    Usage(String),

    /// A job that ran and failed: its error is in the job record too (`blockvault jobs show`).
    #[error("job {job} failed: {error}")]
    JobFailed {
        job: JobId,
        error: String,
        #[source]
        cause: Option<blockvault_jobs::Error>,
    },

    /// A file the request names is not there (a policy file), said in words.
    #[error("{0}")]
    NotFound(String),

    /// What the state of a vault does not allow, said in words (removing its last key slot).
    #[error("{0}")]
    Refused(String),

    /// Anything else, said in words (a vault that cannot be opened, a file that cannot be
    /// created).
    #[error("{0}")]
    Other(String),

    /// An encrypted vault to open and no passphrase source: no `BLOCKVAULT_PASSWORD_FILE`, no
    /// `BLOCKVAULT_PASSWORD_COMMAND`, no terminal to ask on.
    #[error(
        "the vault is encrypted and no passphrase was given; set BLOCKVAULT_PASSWORD_FILE or \
         BLOCKVAULT_PASSWORD_COMMAND, or run on a terminal"
    )]
    NoPassphrase,

    /// An encrypted vault the daemon opens, and no passphrase file or command: the daemon
    /// never prompts.
    #[error(
        "the vault is encrypted and the daemon has no passphrase for it; set \
         BLOCKVAULT_PASSWORD_FILE (under systemd: a credential, `LoadCredential=` and \
         `Environment=BLOCKVAULT_PASSWORD_FILE=%d/...`) or BLOCKVAULT_PASSWORD_COMMAND; the \
         daemon never asks on a terminal"
    )]
    NoDaemonPassphrase,

    /// A key-file vault whose key file is not where this host looks, or does not read.
    #[error(
        "vault {vault} keeps its key outside the vault, and its key file {path} cannot be read \
         ({problem}); put the key file there (`blockvault vault key import`) or name it with \
         BLOCKVAULT_KEY_FILE"
    )]
    KeyFileMissing {
        vault: String,
        path: PathBuf,
        problem: String,
    },

    /// A new passphrase needed (changing one, adding a key slot) and no source for it.
    #[error(
        "a new passphrase is needed and none was given; set BLOCKVAULT_NEW_PASSWORD_FILE or \
         BLOCKVAULT_NEW_PASSWORD_COMMAND, or run on a terminal"
    )]
    NoNewPassphrase,

    /// The passphrase file cannot be read, or holds nothing. Names the file and what named
    /// it, never what it holds.
    #[error("cannot take the passphrase from the file {} (given by {given_by}): {problem}", path.display())]
    PassphraseFile {
        path: PathBuf,
        given_by: &'static str,
        problem: String,
    },

    /// The passphrase command failed, hung or printed nothing. Names the command and how it
    /// ended, never what it printed.
    #[error("the passphrase command `{command}` (given by {given_by}) {problem}")]
    PassphraseCommand {
        command: String,
        given_by: &'static str,
        problem: String,
    },

    /// The terminal could not be asked, or nothing was typed.
    #[error("cannot read the passphrase on the terminal: {problem}")]
    PassphrasePrompt { problem: String },

    /// A new passphrase typed that cannot be taken: the two entries differ, or it is empty.
    #[error("{reason}")]
    NewPassphraseRefused { reason: String },
}

impl Error {
    /// The kind of this error: what a front end acts on (the CLI's exit code).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Jobs(e) => e.kind(),
            Error::Snapshot(e) => e.kind(),
            Error::Vault(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Source(e) => e.kind(),
            Error::Core(e) => e.kind(),
            Error::Policy(_) | Error::Usage(_) => ErrorKind::Usage,
            // The typed cause says what kind of failure it was.
            Error::JobFailed { cause, .. } => {
                cause.as_ref().map_or(ErrorKind::Failure, |c| c.kind())
            }
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Refused(_) => ErrorKind::Refused,
            Error::Other(_) => ErrorKind::Failure,
            Error::NoPassphrase
            | Error::NoDaemonPassphrase
            | Error::KeyFileMissing { .. }
            | Error::PassphraseFile { .. }
            | Error::PassphraseCommand { .. }
            | Error::PassphrasePrompt { .. } => ErrorKind::Locked,
            Error::NoNewPassphrase | Error::NewPassphraseRefused { .. } => ErrorKind::Usage,
        }
    }
}

/// The kind of `error` when it is a blockvault error (this crate's or a crate's below), for a
/// front end holding errors of any type (the CLI's `anyhow` chain): it asks each cause in turn
/// and takes the first answer.
pub fn kind_of(error: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    if let Some(e) = error.downcast_ref::<Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_jobs::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_snapshot::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_vault::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_repo::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_store::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_source::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = error.downcast_ref::<blockvault_core::Error>() {
        return Some(e.kind());
    }
    if error.downcast_ref::<PolicyError>().is_some()
        || error.downcast_ref::<blockvault_policy::Error>().is_some()
        || error
            .downcast_ref::<blockvault_jobs::ParseError>()
            .is_some()
    {
        return Some(ErrorKind::Usage);
    }
    None
}

/// `error` and its sources on one line, `outer: inner: ...` (as `anyhow` prints `{:#}`), each
/// cause once: one that an outer message already quotes (as `"... failed: {source}"` does) is
/// not said again.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

impl From<blockvault_snapshot::Error> for Error {
    fn from(e: blockvault_snapshot::Error) -> Error {
        Error::Snapshot(Box::new(e))
    }
}

impl From<blockvault_vault::Error> for Error {
    fn from(e: blockvault_vault::Error) -> Error {
        Error::Vault(Box::new(e))
    }
}

impl From<blockvault_store::Error> for Error {
    fn from(e: blockvault_store::Error) -> Error {
        Error::Store(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_look_through_the_errors_each_crate_wraps() {
        let missing = blockvault_store::Error::NotAVault {
            location: "/v".into(),
            reason: "no config".into(),
        };
        let vault = blockvault_vault::Error::from(missing);
        let jobs = blockvault_jobs::Error::from(vault);
        assert_eq!(jobs.kind(), ErrorKind::NotFound);
        assert_eq!(Error::from(jobs).kind(), ErrorKind::NotFound);
        let refused = blockvault_vault::Error::RedundancyFixed {
            location: "/v".into(),
            redundancy: blockvault_core::Redundancy::Single,
            vms: Vec::new(),
        };
        assert_eq!(Error::from(refused).kind(), ErrorKind::Refused);
        assert_eq!(Error::Usage("no".into()).kind(), ErrorKind::Usage);
        let failed = Error::JobFailed {
            job: JobId(3),
            error: "x".into(),
            cause: Some(blockvault_jobs::Error::NotProtected {
                vm: "vm1".parse().expect("vm"),
            }),
        };
        assert_eq!(failed.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn kind_of_names_blockvault_errors_only() {
        let io = std::io::Error::other("disk on fire");
        assert_eq!(kind_of(&io), None);
        let store = blockvault_store::Error::BucketMissing {
            location: "s3://b/p".into(),
        };
        assert_eq!(kind_of(&store), Some(ErrorKind::NotFound));
    }

    #[test]
    fn describe_follows_the_sources() {
        let failed = Error::JobFailed {
            job: JobId(3),
            error: "boom".into(),
            cause: Some(blockvault_jobs::Error::Hook {
                message: "hook failed".into(),
            }),
        };
        assert_eq!(describe(&failed), "job 3 failed: boom: hook failed");
        // A cause the outer message already quotes is not repeated.
        let corrupt = blockvault_store::Error::ObjectCorrupt {
            key: "points/vm1/p".into(),
            source: blockvault_core::Error::ChecksumMismatch { what: "point" },
        };
        assert_eq!(
            describe(&corrupt),
            "vault object points/vm1/p is corrupt: point checksum mismatch: the data is corrupt"
        );
    }
}
