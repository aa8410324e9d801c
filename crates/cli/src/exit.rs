//! Exit codes scripts can trust, and the one line (or JSON object) that explains a failure.

use blockvault_host::ErrorKind;

/// The process exit codes; `blockvault --help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    Integrity = 4,
    /// A backup job completed with warning: the snapshot was taken, the transfer failed.
    CompletedWithWarning = 5,
    /// The state of the vault, VM or policy does not allow the operation (the redundancy of a
    /// vault that holds backup items; a VM protected by another vault; a policy in use).
    Refused = 6,
    /// An encrypted vault no key given opens: a wrong passphrase, none given, a missing key
    /// file.
    Locked = 7,
}

impl ExitCode {
    /// Name of the code in JSON error output.
    pub fn kind(self) -> &'static str {
        match self {
            ExitCode::Failure => "failure",
            ExitCode::Usage => "usage",
            ExitCode::NotFound => "not-found",
            ExitCode::Integrity => "integrity",
            ExitCode::CompletedWithWarning => "completed-with-warning",
            ExitCode::Refused => "refused",
            ExitCode::Locked => "locked",
        }
    }
}

impl From<ErrorKind> for ExitCode {
    fn from(kind: ErrorKind) -> ExitCode {
        match kind {
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::NotFound => ExitCode::NotFound,
            ErrorKind::Integrity => ExitCode::Integrity,
            ErrorKind::Refused => ExitCode::Refused,
            ErrorKind::Locked => ExitCode::Locked,
            _ => ExitCode::Failure,
        }
    }
}

/// The exit code of an error: the kind of the first blockvault error in its chain (a bad
/// argument found after parsing is a usage error), else a failure.
pub fn classify(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|cause| {
            if cause.is::<UsageError>() {
                return Some(ErrorKind::Usage);
            }
            blockvault_host::kind_of(cause)
        })
        .map_or(ExitCode::Failure, ExitCode::from)
}

/// A bad argument found after parsing (for example an unparseable `--at`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
