//! The job vocabulary: ids, operations, statuses, subtasks and tiers, and the rule that turns
//! the status of the two subtasks of a backup into the status of the job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a job: a positive number, unique in a catalog and never reused (shown and parsed
/// as the plain number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A word that names no value of one of the job vocabulary's sets, or a job id that is not one
/// (the jobs crate's [`Error::InvalidValue`](crate::Error::InvalidValue) once it leaves here).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid {what} {value:?}: expected {expected}")]
    InvalidValue {
        what: &'static str,
        value: String,
        expected: String,
    },
}

impl FromStr for JobId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<JobId, ParseError> {
        match s.trim().parse::<i64>() {
            Ok(id) if id > 0 => Ok(JobId(id)),
            _ => Err(ParseError::InvalidValue {
                what: "job id",
                value: s.to_owned(),
                expected: "a positive number".to_owned(),
            }),
        }
    }
}

blockvault_core::vocabulary!(
    /// What a job does (the Azure Backup job operations).
    Operation, "operation", ParseError::InvalidValue {
        /// A scheduled backup.
        Backup => "backup", "Backup";
        /// A backup started by `backup now`.
        BackupOnDemand => "backup-on-demand", "Backup (on demand)";
        /// Protecting a VM: VM + policy + vault.
        ConfigureBackup => "configure-backup", "Configure backup";
        /// Moving a VM from a Standard to an Enhanced policy (runs a backup).
        ConfigureBackupMigrate => "configure-backup-migrate", "Configure backup (Migrate policy)";
        Restore => "restore", "Restore";
        DeleteBackupData => "delete-backup-data", "Delete backup data";
        /// `blockvault forget`: chosen points soft-deleted (their purge is a Delete backup data).
        ForgetPoints => "forget-points", "Forget recovery points";
        Verify => "verify", "Verify";
    }
);

blockvault_core::vocabulary!(
    /// Where a job stands. A job is `InProgress` until it ends in one of the other three.
    JobStatus, "job status", ParseError::InvalidValue {
        InProgress => "in-progress", "In progress";
        Completed => "completed", "Completed";
        /// The backup made a point in the snapshot tier, but its transfer to the vault failed.
        CompletedWithWarning => "completed-with-warning", "Completed with warning";
        Failed => "failed", "Failed";
    }
);

blockvault_core::vocabulary!(
    /// The two phases of a backup job, in the order they run.
    SubtaskKind, "subtask", ParseError::InvalidValue {
        /// Capture every disk of the VM into the local snapshot tier.
        Snapshot => "snapshot", "Snapshot";
        /// Send the churn since the last vault point to the vault.
        Transfer => "transfer", "Transfer data to vault";
    }
);

blockvault_core::vocabulary!(
    /// Where a subtask stands.
    SubtaskStatus, "subtask status", ParseError::InvalidValue {
        /// Not started yet.
        Pending => "pending", "Pending";
        InProgress => "in-progress", "In progress";
        Completed => "completed", "Completed";
        /// Deliberately not run (for example: an earlier job's transfer of the same VM was still
        /// running); its error says why.
        Skipped => "skipped", "Skipped";
        Failed => "failed", "Failed";
    }
);

impl SubtaskStatus {
    /// Whether the subtask has ended (completed, skipped or failed).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            SubtaskStatus::Completed | SubtaskStatus::Skipped | SubtaskStatus::Failed
        )
    }
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_done(self) -> bool {
        self != JobStatus::InProgress
    }
}

/// The status of a backup job from the status of its Snapshot and Transfer subtasks.
///
/// The SPEC (Azure) table, exactly:
///
/// | Snapshot | Transfer | Job |
/// |---|---|---|
/// | Completed | In progress | In progress |
/// | Completed | Skipped | Completed |
/// | Completed | Completed | Completed |
/// | Completed | Failed | Completed with warning |
/// | Failed | (any) | Failed |
///
/// Extended to the states the table leaves out:
///
/// - Snapshot Pending or In progress: the job is In progress, whatever Transfer says.
/// - Snapshot Completed, Transfer Pending (queued behind the snapshot): In progress.
/// - Snapshot Skipped (no new snapshot was taken) leaves the outcome to the transfer: Transfer
///   Completed makes the job Completed, Failed makes it Failed (the job protected nothing new),
///   Pending or In progress keeps it In progress, and Skipped as well makes it Completed with
///   warning (nothing failed, but nothing was protected either).
pub fn job_status(snapshot: SubtaskStatus, transfer: SubtaskStatus) -> JobStatus {
    use JobStatus as J;
    use SubtaskStatus as S;
    match (snapshot, transfer) {
        (S::Failed, _) => J::Failed,
        (S::Pending | S::InProgress, _) => J::InProgress,
        (S::Completed | S::Skipped, S::Pending | S::InProgress) => J::InProgress,
        (S::Completed | S::Skipped, S::Completed) => J::Completed,
        (S::Completed, S::Skipped) => J::Completed,
        (S::Completed, S::Failed) => J::CompletedWithWarning,
        (S::Skipped, S::Failed) => J::Failed,
        (S::Skipped, S::Skipped) => J::CompletedWithWarning,
    }
}

blockvault_core::vocabulary!(
    /// Where a recovery point lives.
    Tier, "tier", ParseError::InvalidValue {
        /// The local snapshot tier on the host (instant restore).
        Snapshot => "snapshot", "snapshot";
        /// The vault.
        Vault => "vault", "vault";
    }
);

/// The tiers a recovery point lives in. Shown as `snapshot+vault`, `snapshot`, `vault` (or
/// `none`); serialized as the list of tier names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tiers {
    pub snapshot: bool,
    pub vault: bool,
}

impl Tiers {
    /// Whether the point lives in `tier`.
    pub fn has(self, tier: Tier) -> bool {
        match tier {
            Tier::Snapshot => self.snapshot,
            Tier::Vault => self.vault,
        }
    }

    /// These tiers with `tier` added (`present`) or removed.
    pub fn with(mut self, tier: Tier, present: bool) -> Tiers {
        match tier {
            Tier::Snapshot => self.snapshot = present,
            Tier::Vault => self.vault = present,
        }
        self
    }

    /// Whether the point lives nowhere.
    pub fn is_empty(self) -> bool {
        !self.snapshot && !self.vault
    }

    /// The tiers present, snapshot first.
    pub fn iter(self) -> impl Iterator<Item = Tier> {
        Tier::ALL.iter().copied().filter(move |&t| self.has(t))
    }
}

impl FromIterator<Tier> for Tiers {
    fn from_iter<I: IntoIterator<Item = Tier>>(iter: I) -> Tiers {
        iter.into_iter()
            .fold(Tiers::default(), |tiers, t| tiers.with(t, true))
    }
}

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Tier::key).collect();
        f.write_str(&names.join("+"))
    }
}

impl Serialize for Tiers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tiers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tiers, D::Error> {
        Ok(Vec::<Tier>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_follows_the_spec_table_and_its_extensions() {
        use JobStatus as J;
        use SubtaskStatus as S;
        #[rustfmt::skip]
        let table = [
            // The SPEC table.
            (S::Completed, S::InProgress, J::InProgress),
            (S::Completed, S::Skipped, J::Completed),
            (S::Completed, S::Completed, J::Completed),
            (S::Completed, S::Failed, J::CompletedWithWarning),
            (S::Failed, S::Failed, J::Failed),
            // Snapshot failed: failed, whatever the transfer says.
            (S::Failed, S::Pending, J::Failed),
            (S::Failed, S::InProgress, J::Failed),
            (S::Failed, S::Completed, J::Failed),
            (S::Failed, S::Skipped, J::Failed),
            // Snapshot not done yet.
            (S::Pending, S::Pending, J::InProgress),
            (S::Pending, S::InProgress, J::InProgress),
            (S::Pending, S::Completed, J::InProgress),
            (S::Pending, S::Skipped, J::InProgress),
            (S::Pending, S::Failed, J::InProgress),
            (S::InProgress, S::Pending, J::InProgress),
            (S::InProgress, S::InProgress, J::InProgress),
            (S::InProgress, S::Completed, J::InProgress),
            (S::InProgress, S::Skipped, J::InProgress),
            (S::InProgress, S::Failed, J::InProgress),
            // Transfer queued behind a completed snapshot.
            (S::Completed, S::Pending, J::InProgress),
            // No new snapshot: the transfer decides.
            (S::Skipped, S::Pending, J::InProgress),
            (S::Skipped, S::InProgress, J::InProgress),
            (S::Skipped, S::Completed, J::Completed),
            (S::Skipped, S::Failed, J::Failed),
            (S::Skipped, S::Skipped, J::CompletedWithWarning),
        ];
        assert_eq!(
            table.len(),
            S::ALL.len() * S::ALL.len(),
            "every combination once"
        );
        for &(snapshot, transfer, expected) in &table {
            assert_eq!(
                job_status(snapshot, transfer),
                expected,
                "snapshot {snapshot}, transfer {transfer}"
            );
        }
    }

    #[test]
    fn names_match_the_spec_and_keys_are_kebab_case() {
        let operations: Vec<(&str, &str)> =
            Operation::ALL.iter().map(|o| (o.key(), o.name())).collect();
        assert_eq!(
            operations,
            [
                ("backup", "Backup"),
                ("backup-on-demand", "Backup (on demand)"),
                ("configure-backup", "Configure backup"),
                (
                    "configure-backup-migrate",
                    "Configure backup (Migrate policy)"
                ),
                ("restore", "Restore"),
                ("delete-backup-data", "Delete backup data"),
                ("forget-points", "Forget recovery points"),
                ("verify", "Verify"),
            ]
        );
        assert_eq!(
            JobStatus::CompletedWithWarning.to_string(),
            "Completed with warning"
        );
        assert_eq!(JobStatus::InProgress.key(), "in-progress");
        assert_eq!(SubtaskKind::Transfer.to_string(), "Transfer data to vault");
        assert_eq!(SubtaskStatus::Pending.key(), "pending");
    }

    #[test]
    fn from_str_takes_the_key_or_the_name_in_any_case() {
        for op in Operation::ALL {
            assert_eq!(op.key().parse::<Operation>().expect("key"), *op);
            assert_eq!(op.name().parse::<Operation>().expect("name"), *op);
            assert_eq!(
                op.key().to_uppercase().parse::<Operation>().expect("upper"),
                *op
            );
        }
        for status in JobStatus::ALL {
            assert_eq!(status.key().parse::<JobStatus>().expect("key"), *status);
            assert_eq!(status.name().parse::<JobStatus>().expect("name"), *status);
        }
        assert_eq!(
            "Transfer data to vault"
                .parse::<SubtaskKind>()
                .expect("name"),
            SubtaskKind::Transfer
        );
        let err = "backups".parse::<Operation>().expect_err("unknown");
        let message = err.to_string();
        assert!(message.contains("\"backups\""), "{message}");
        assert!(message.contains("backup-on-demand"), "{message}");
        assert!(matches!(
            err,
            ParseError::InvalidValue {
                what: "operation",
                ..
            }
        ));
    }

    #[test]
    fn job_ids_are_positive_numbers() {
        assert_eq!("42".parse::<JobId>().expect("id"), JobId(42));
        assert_eq!(JobId(42).to_string(), "42");
        for bad in ["0", "-3", "x", ""] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::json!(JobId(7)), serde_json::json!(7));
    }

    #[test]
    fn serde_speaks_the_keys() {
        assert_eq!(
            serde_json::to_string(&Operation::BackupOnDemand).expect("json"),
            "\"backup-on-demand\""
        );
        assert_eq!(
            serde_json::from_str::<JobStatus>("\"completed-with-warning\"").expect("json"),
            JobStatus::CompletedWithWarning
        );
        assert!(serde_json::from_str::<SubtaskStatus>("\"done\"").is_err());
    }

    #[test]
    fn tiers_display_and_serialize() {
        let both = Tiers {
            snapshot: true,
            vault: true,
        };
        let cases = [
            (
                both,
                "snapshot+vault",
                serde_json::json!(["snapshot", "vault"]),
            ),
            (
                both.with(Tier::Vault, false),
                "snapshot",
                serde_json::json!(["snapshot"]),
            ),
            (
                both.with(Tier::Snapshot, false),
                "vault",
                serde_json::json!(["vault"]),
            ),
            (Tiers::default(), "none", serde_json::json!([])),
        ];
        for (tiers, text, json) in cases {
            assert_eq!(tiers.to_string(), text);
            assert_eq!(serde_json::to_value(tiers).expect("json"), json);
            assert_eq!(serde_json::from_value::<Tiers>(json).expect("back"), tiers);
        }
        assert!(both.has(Tier::Snapshot) && both.has(Tier::Vault));
        assert!(Tiers::default().is_empty());
    }
}
