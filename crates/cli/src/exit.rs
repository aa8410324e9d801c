//! Exit codes scripts can trust, and the one line (or JSON object) that explains a failure.

use blockvault_vault::Error as VaultError;

/// The process exit codes; `blockvault --help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Failure = 1,
    Usage = 2,
    NotFound = 3,
    Integrity = 4,
    /// A backup job completed with warning: the snapshot was taken, the transfer failed.
    CompletedWithWarning = 5,
    /// The vault's state does not allow the operation (the redundancy of a vault that holds
    /// backup items).
    Refused = 6,
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
        }
    }
}

/// Classifies an error by the first blockvault error in its chain.
pub fn classify(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<blockvault_jobs::Error>() {
            match e {
                blockvault_jobs::Error::Vault(e) => return classify_vault(e),
                blockvault_jobs::Error::Snapshots(e) => {
                    return match e.as_ref() {
                        blockvault_snapshot::Error::Store(e) => classify_store(e),
                        _ => ExitCode::Failure,
                    };
                }
                blockvault_jobs::Error::UnknownJob { .. }
                | blockvault_jobs::Error::NoPointsInTier { .. }
                | blockvault_jobs::Error::UnknownPolicy { .. }
                | blockvault_jobs::Error::NotProtected { .. }
                | blockvault_jobs::Error::NotSoftDeleted { .. } => return ExitCode::NotFound,
                // Refused because of where the VM stands in the protection lifecycle, like a
                // VM protected by another vault: the operation cannot be done now.
                blockvault_jobs::Error::SoftDeleted { .. }
                | blockvault_jobs::Error::SoftDeletedElsewhere { .. }
                | blockvault_jobs::Error::SoftDeletePeriodOver { .. }
                | blockvault_jobs::Error::PurgeNotDue { .. }
                | blockvault_jobs::Error::ProtectionStopped { .. }
                | blockvault_jobs::Error::DeleteWhileBackup { .. }
                | blockvault_jobs::Error::VaultUnreachable { .. } => return ExitCode::Failure,
                blockvault_jobs::Error::Policy(_)
                | blockvault_jobs::Error::PolicyFile { .. }
                | blockvault_jobs::Error::InvalidValue { .. } => return ExitCode::Usage,
                blockvault_jobs::Error::Hook { .. }
                | blockvault_jobs::Error::InstantRestoreDays { .. } => return ExitCode::Failure,
                _ => return ExitCode::Failure,
            }
        }
        if let Some(e) = cause.downcast_ref::<VaultError>() {
            return classify_vault(e);
        }
        if let Some(e) = cause.downcast_ref::<blockvault_store::Error>() {
            return classify_store(e);
        }
        if let Some(e) = cause.downcast_ref::<blockvault_source::Error>() {
            return classify_disk(e);
        }
        if cause.downcast_ref::<blockvault_core::Error>().is_some() {
            return ExitCode::Usage;
        }
        if cause
            .downcast_ref::<blockvault_jobs::PolicyError>()
            .is_some()
        {
            return ExitCode::Usage;
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return ExitCode::Usage;
        }
    }
    ExitCode::Failure
}

fn classify_vault(e: &VaultError) -> ExitCode {
    match e {
        VaultError::Store(e) => classify_store(e),
        VaultError::Disk(e) => classify_disk(e),
        VaultError::Block { source, .. } => classify_store(source),
        VaultError::BlockLength { .. } => ExitCode::Integrity,
        VaultError::GcMark { source } | VaultError::InPlacePartial { source, .. } => {
            classify_vault(source)
        }
        VaultError::RedundancyFixed { .. }
        | VaultError::NotAReplica { .. }
        | VaultError::PrimaryStillThere { .. } => ExitCode::Refused,
        VaultError::SecondaryTarget { .. } => ExitCode::Usage,
        VaultError::UnknownVm { .. }
        | VaultError::UnknownPoint { .. }
        | VaultError::NoPointAtOrBefore { .. } => ExitCode::NotFound,
        VaultError::NoDisks
        | VaultError::DiskName { .. }
        | VaultError::DuplicateDiskName { .. }
        | VaultError::AmbiguousPoint { .. } => ExitCode::Usage,
        _ => ExitCode::Failure,
    }
}

fn classify_store(e: &blockvault_store::Error) -> ExitCode {
    use blockvault_store::Error as S;
    match e {
        S::NotAVault { .. } | S::BucketMissing { .. } => ExitCode::NotFound,
        S::AlreadyAVault { .. }
        | S::NotEmpty { .. }
        | S::InvalidLocation { .. }
        | S::Config { .. }
        | S::Setting { .. } => ExitCode::Usage,
        // A chunk or map that a committed point names is part of the point: its absence is
        // damage to the vault, not a lookup miss.
        S::ChunkMissing { .. } | S::MapMissing { .. } => ExitCode::Integrity,
        S::PointMissing { .. } => ExitCode::NotFound,
        S::ReplicaAlsoBad { primary, .. } => classify_store(primary),
        _ if e.is_corrupt() => ExitCode::Integrity,
        _ => ExitCode::Failure,
    }
}

fn classify_disk(e: &blockvault_source::Error) -> ExitCode {
    match e {
        blockvault_source::Error::NotFound { .. } => ExitCode::NotFound,
        blockvault_source::Error::NotADisk { .. } => ExitCode::Usage,
        _ => ExitCode::Failure,
    }
}

/// A bad argument found after parsing (for example an unparseable `--at`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A job that ran and failed: its error is in the job record too (`blockvault jobs show`).
#[derive(Debug, thiserror::Error)]
#[error("job {job} failed: {error}")]
pub struct JobFailed {
    pub job: blockvault_jobs::JobId,
    pub error: String,
    #[source]
    pub cause: Option<blockvault_jobs::Error>,
}
