use std::path::PathBuf;

use crate::model::ParseError;
use crate::{JobId, JobStatus, SubtaskKind, SubtaskStatus};

/// What can go wrong with jobs and the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("catalog {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The catalog failed for want of space (SQLITE_FULL, or an I/O error with nothing left
    /// available): `free` bytes are available on the file system holding `dir`.
    #[error(
        "catalog {path}: no space left on the device holding the state directory {dir} ({} \
         free); free some space there or move the state directory (--state-dir)",
        human_bytes(*free)
    )]
    StateDirFull {
        path: PathBuf,
        dir: PathBuf,
        free: u64,
        /// Boxed: this variant is the largest, and every `Result` of the crate carries it.
        #[source]
        source: Box<rusqlite::Error>,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "catalog {path} has schema version {found}; this build reads versions up to {supported} \
         (was it written by a newer blockvault?)"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("catalog {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },

    #[error("no job {id}")]
    UnknownJob { id: JobId },

    /// `--capture reflink` where no clone can be made.
    #[error(
        "cannot capture {vm} with reflink clones: {why}; put the disks and the snapshot tier \
         (--snapshot-dir) on one XFS (reflink=1) or btrfs file system, or use --capture auto \
         to read the disks under the hook instead"
    )]
    ReflinkUnavailable {
        vm: blockvault_core::VmName,
        why: String,
    },

    /// A disk whose header says another format than the previous point recorded, with no
    /// `--disk-format` said (a guest can write a qcow2 header into its raw disk).
    #[error(
        "disk {disk} was backed up as {before}, but its header now says {now}: refused, since a \
         guest can write a disk header of its own (a qcow2 header can name a host file as its \
         backing file); if the image really is {now} now, say so with --disk-format {now}, or \
         --disk-format {before} to read it as before",
        disk = disk.display()
    )]
    DiskFormatChanged {
        disk: PathBuf,
        before: blockvault_core::DiskFormat,
        now: blockvault_core::DiskFormat,
    },

    #[error(transparent)]
    Capture(#[from] blockvault_capture::Error),

    /// A QEMU process or tool (qemu-nbd serving a qcow2 disk) failed.
    #[error(transparent)]
    Qemu(#[from] blockvault_qemu::Error),

    #[error("job {job} has no {kind} subtask")]
    UnknownSubtask { job: JobId, kind: SubtaskKind },

    #[error("job {id} has already ended ({status})")]
    JobEnded { id: JobId, status: JobStatus },

    #[error("job {job}: the {kind} subtask cannot go from {from} to {to}")]
    InvalidTransition {
        job: JobId,
        kind: SubtaskKind,
        from: SubtaskStatus,
        to: SubtaskStatus,
    },

    #[error("job {job} cannot end while its {kind} subtask is {status}")]
    SubtaskNotDone {
        job: JobId,
        kind: SubtaskKind,
        status: SubtaskStatus,
    },

    #[error("invalid {what} {value:?}: expected {expected}")]
    InvalidValue {
        what: &'static str,
        value: String,
        expected: String,
    },

    #[error(transparent)]
    Vault(Box<blockvault_vault::Error>),

    #[error(transparent)]
    Snapshots(Box<blockvault_snapshot::Error>),

    #[error("lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{message}")]
    Hook { message: String },

    #[error("VM {vm} has no points in the {tier} tier")]
    NoPointsInTier {
        vm: blockvault_core::VmName,
        tier: crate::Tier,
    },

    #[error("instant restore days {days} is out of range {min}..={max}")]
    InstantRestoreDays { days: u32, min: u32, max: u32 },

    #[error(transparent)]
    Policy(#[from] blockvault_policy::Error),

    #[error("no policy {name} (see `blockvault policy list`)")]
    UnknownPolicy { name: crate::PolicyName },

    #[error("policy {name} already exists (use `blockvault policy edit` to change it)")]
    PolicyExists { name: crate::PolicyName },

    #[error(
        "policy {name} is the default every catalog keeps (`protect` without --policy uses it); \
         change it with `blockvault policy edit {name}` instead"
    )]
    DefaultPolicyKept { name: crate::PolicyName },

    #[error(
        "policy {name} protects {}: move them to another policy before deleting it",
        vms.join(", ")
    )]
    PolicyInUse {
        name: crate::PolicyName,
        vms: Vec<String>,
    },

    #[error(
        "policy {name} is {from}; a policy's type cannot change (create another policy of type {to} \
         and move the VMs to it: a Standard VM moving to Enhanced is migrated)"
    )]
    PolicyTypeChange {
        name: crate::PolicyName,
        from: crate::PolicyType,
        to: crate::PolicyType,
    },

    #[error("VM {vm} is not protected (see `blockvault protect --help`)")]
    NotProtected { vm: blockvault_core::VmName },

    #[error(
        "VM {vm} is protected by the vault {protected_by}; a VM is protected by one vault only \
         (stop its protection first)"
    )]
    ProtectedElsewhere {
        vm: blockvault_core::VmName,
        protected_by: String,
    },

    #[error(
        "VM {vm} is protected in this vault by {holder} since {since}; a VM is protected by one \
         host at a time (stop its protection there, or move it here deliberately with \
         `blockvault protect --take-over`)"
    )]
    HeldByAnotherHost {
        vm: blockvault_core::VmName,
        holder: String,
        since: jiff::Timestamp,
    },

    #[error(
        "VM {vm} uses the Enhanced policy {from}; moving back to a Standard policy ({to}) is \
         not possible: migration to Enhanced is irreversible"
    )]
    MigrationIrreversible {
        vm: blockvault_core::VmName,
        from: crate::PolicyName,
        to: crate::PolicyName,
    },

    #[error(
        "VM {vm} cannot migrate to the Enhanced policy {to} while its backup job {job} is in \
         progress; wait for it to end (`blockvault jobs show {job}`)"
    )]
    MigrationWhileBackup {
        vm: blockvault_core::VmName,
        to: crate::PolicyName,
        job: JobId,
    },

    #[error(
        "VM {vm} has backup data soft-deleted in the vault {vault} until {}: it cannot be \
         protected in another vault until it is undeleted (`blockvault undelete --vm {vm}`) \
         or purged then",
        utc(*purge_after)
    )]
    SoftDeletedElsewhere {
        vm: blockvault_core::VmName,
        vault: String,
        purge_after: jiff::Timestamp,
    },

    #[error(
        "the backup data of VM {vm} in the vault {vault} is soft-deleted (purged after {}): \
         undelete it first with `blockvault undelete --vm {vm}`",
        utc(*purge_after)
    )]
    SoftDeleted {
        vm: blockvault_core::VmName,
        vault: String,
        purge_after: jiff::Timestamp,
    },

    #[error(
        "protection of VM {vm} is stopped (its data is retained in the vault {vault}); \
         `blockvault protect --vault {vault} --vm {vm}` resumes it"
    )]
    ProtectionStopped {
        vm: blockvault_core::VmName,
        vault: String,
    },

    #[error(
        "VM {vm} has no soft-deleted backup data to undelete (data deleted more than {} days \
         ago is purged; see `blockvault items` and `blockvault jobs --vm {vm}`)",
        blockvault_core::SOFT_DELETE_DAYS
    )]
    NotSoftDeleted { vm: blockvault_core::VmName },

    #[error(
        "the soft-delete period of VM {vm} ended at {}: its backup data is purged and can no \
         longer be undeleted",
        utc(*purge_after)
    )]
    SoftDeletePeriodOver {
        vm: blockvault_core::VmName,
        purge_after: jiff::Timestamp,
    },

    #[error(
        "the backup data of VM {vm} is soft-deleted until {}; it is purged only after that",
        utc(*purge_after)
    )]
    PurgeNotDue {
        vm: blockvault_core::VmName,
        purge_after: jiff::Timestamp,
    },

    #[error(
        "cannot delete the backup data of VM {vm} while its backup job {job} is in progress; \
         wait for it to end (`blockvault jobs show {job}`)"
    )]
    DeleteWhileBackup {
        vm: blockvault_core::VmName,
        job: JobId,
    },

    #[error(
        "point {point} of VM {vm} is forgotten (soft-deleted, purged after {}): \
         `blockvault undelete --vm {vm} --point {point}` brings it back until then",
        utc(*purge_after)
    )]
    PointSoftDeleted {
        vm: blockvault_core::VmName,
        point: blockvault_core::PointId,
        purge_after: jiff::Timestamp,
    },

    #[error(
        "VM {vm} has no forgotten point{} to undelete (forgotten points are purged after {} \
         days; see `blockvault points --vm {vm}`)",
        point.as_ref().map(|p| format!(" {p}")).unwrap_or_default(),
        blockvault_core::SOFT_DELETE_DAYS
    )]
    PointNotSoftDeleted {
        vm: blockvault_core::VmName,
        point: Option<String>,
    },

    #[error(
        "VM {vm} is protected with policy {policy}: its retention decides which points stay, \
         not keep rules; change the policy (`blockvault policy edit`), forget one point with \
         `--point`, or stop protection first (`blockvault stop-protection --vm {vm}`)"
    )]
    KeepRulesOfProtected {
        vm: blockvault_core::VmName,
        /// The policy's name, and the host holding the VM when it is another.
        policy: String,
    },

    #[error(
        "point {point} is the newest of VM {vm}, which is protected (retention always keeps a \
         protected VM's newest point); add --force to forget it anyway"
    )]
    NewestOfProtected {
        vm: blockvault_core::VmName,
        point: blockvault_core::PointId,
    },

    #[error("invalid keep rules: {0}")]
    KeepRules(String),

    #[error("the vault {location} is unavailable: {reason}")]
    VaultUnreachable { location: String, reason: String },

    #[error("disk path {path:?} is not UTF-8; the catalog stores paths as text")]
    NonUtf8Path { path: PathBuf },
}

impl From<blockvault_vault::Error> for Error {
    fn from(e: blockvault_vault::Error) -> Error {
        Error::Vault(Box::new(e))
    }
}

impl From<blockvault_store::Error> for Error {
    fn from(e: blockvault_store::Error) -> Error {
        Error::Vault(Box::new(e.into()))
    }
}

impl From<blockvault_policy::PolicyError> for Error {
    fn from(e: blockvault_policy::PolicyError) -> Error {
        Error::Policy(e.into())
    }
}

impl From<blockvault_snapshot::Error> for Error {
    fn from(e: blockvault_snapshot::Error) -> Error {
        match e {
            // The data path's errors read as they do out of a vault.
            blockvault_snapshot::Error::Repo(e) => e.into(),
            e => Error::Snapshots(Box::new(e)),
        }
    }
}

/// The data path's errors (a Snapshot into the tier, a restore out of it) read as they do out
/// of a vault.
impl From<blockvault_repo::Error> for Error {
    fn from(e: blockvault_repo::Error) -> Error {
        Error::Vault(Box::new(e.into()))
    }
}

impl Error {
    pub(crate) fn lock(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Lock {
            path: path.to_owned(),
            source,
        }
    }
}

/// A size in messages: bytes, KiB or MiB, one decimal.
fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    match n {
        n if n >= MIB => format!("{:.1} MiB", n as f64 / MIB as f64),
        n if n >= KIB => format!("{:.1} KiB", n as f64 / KIB as f64),
        n => format!("{n} bytes"),
    }
}

/// A time in messages: minutes, in UTC, said so.
fn utc(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Error {
        match e {
            ParseError::InvalidValue {
                what,
                value,
                expected,
            } => Error::InvalidValue {
                what,
                value,
                expected,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of this error (see [`ErrorKind`](blockvault_core::ErrorKind)), looking through
    /// the vault and snapshot-tier errors it wraps.
    pub fn kind(&self) -> blockvault_core::ErrorKind {
        use blockvault_core::ErrorKind;
        match self {
            Error::Vault(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
            Error::UnknownJob { .. }
            | Error::NoPointsInTier { .. }
            | Error::UnknownPolicy { .. }
            | Error::NotProtected { .. }
            | Error::NotSoftDeleted { .. }
            | Error::PointNotSoftDeleted { .. } => ErrorKind::NotFound,
            Error::Policy(_) | Error::InvalidValue { .. } | Error::KeepRules(_) => ErrorKind::Usage,
            Error::Capture(e) => e.kind(),
            Error::Qemu(e) => e.kind(),
            // Refused: the state of the VM, its policy or its vault does not allow it (where
            // the VM stands in the protection lifecycle: soft-deleted, stopped, a backup
            // running, protected by another vault; a policy in use or of another type).
            Error::ReflinkUnavailable { .. }
            | Error::DiskFormatChanged { .. }
            | Error::PolicyExists { .. }
            | Error::DefaultPolicyKept { .. }
            | Error::PolicyInUse { .. }
            | Error::PolicyTypeChange { .. }
            | Error::ProtectedElsewhere { .. }
            | Error::HeldByAnotherHost { .. }
            | Error::MigrationIrreversible { .. }
            | Error::MigrationWhileBackup { .. }
            | Error::SoftDeletedElsewhere { .. }
            | Error::SoftDeleted { .. }
            | Error::ProtectionStopped { .. }
            | Error::SoftDeletePeriodOver { .. }
            | Error::PurgeNotDue { .. }
            | Error::DeleteWhileBackup { .. }
            | Error::PointSoftDeleted { .. }
            | Error::KeepRulesOfProtected { .. }
            | Error::NewestOfProtected { .. } => ErrorKind::Refused,
            // Hooks, an unreachable vault, I/O, the catalog: the operation failed.
            _ => ErrorKind::Failure,
        }
    }
}
