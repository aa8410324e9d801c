//! What the catalog knows about VMs and recovery points.

use std::path::PathBuf;

use blockvault_core::{Consistency, PointId, RecoveryPoint, VmName};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::Tiers;

/// A recovery point as the catalog lists it: where it lives and, in the snapshot tier, until
/// when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PointEntry {
    pub vm: VmName,
    pub id: PointId,
    pub time: Timestamp,
    pub consistency: Consistency,
    pub tiers: Tiers,
    /// When the point leaves the snapshot tier (only while it is there, and only if known).
    pub snapshot_expires: Option<Timestamp>,
}

/// What a store says about one of its points: enough to list it. The input of
/// [`Catalog::add_point_tier`](crate::Catalog::add_point_tier) and
/// [`Catalog::sync_tier`](crate::Catalog::sync_tier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointSummary {
    pub id: PointId,
    pub time: Timestamp,
    pub consistency: Consistency,
}

impl From<&RecoveryPoint> for PointSummary {
    fn from(point: &RecoveryPoint) -> PointSummary {
        PointSummary {
            id: point.id.clone(),
            time: point.time,
            consistency: point.consistency,
        }
    }
}

/// A VM the host backs up: the vault that protects it and its disks, as last configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmEntry {
    pub name: VmName,
    /// The vault location, as the user gave it (never with credentials).
    pub vault: String,
    pub disks: Vec<PathBuf>,
    /// When this entry was last written.
    pub updated: Timestamp,
}

/// A VM under protection: the vault it is backed up to, its disks, its policy and hooks, and
/// where the scheduler stands with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtectedItem {
    pub vm: VmName,
    /// The vault location, as the user gave it (never with credentials).
    pub vault: String,
    pub disks: Vec<PathBuf>,
    pub policy: crate::PolicyName,
    #[serde(skip)]
    pub hooks: crate::Hooks,
    /// How its backups capture the disks (`protect --capture`).
    pub capture: crate::CaptureMode,
    /// The format of its disks, when said outright (`protect --disk-format`); `None`: by
    /// each disk's header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<blockvault_core::DiskFormat>,
    /// When protection was configured (the schedule's first slot comes after it).
    pub since: Timestamp,
    /// The scheduled instant of the last slot the scheduler handled (ran, or folded into a
    /// later run after downtime); none before the first.
    pub handled: Option<Timestamp>,
    /// Whether protection is on, stopped, or stopped with the data soft-deleted.
    #[serde(flatten)]
    pub state: ProtectionState,
}

impl ProtectedItem {
    /// Whether protection is on: the scheduler backs the VM up and retention applies to its
    /// points. False once protection is stopped (with data retained or soft-deleted): its
    /// points are then kept as they are, and retention must not expire them.
    pub fn is_protected(&self) -> bool {
        self.state == ProtectionState::Protected
    }
}

/// Where a protected item stands in the protection lifecycle (SPEC "Protection lifecycle").
///
/// ```text
///              stop --retain-data                 stop --delete-data
///  Protected ---------------------> Stopped ------------------------> SoftDeleted
///      |  <---------------------      ^                                 |     |
///      |        protect (resume)      +----------- undelete ------------+     | 14 days
///      +---------------- stop --delete-data ------------------------------->  | purge: the
///                                                                             v item is gone
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ProtectionState {
    /// Backed up on its policy's schedule.
    Protected,
    /// Protection stopped with *retain data*: no backups; every point (snapshot and vault) is
    /// kept as it is until protection resumes (`protect`, same vault) or the data is deleted.
    Stopped {
        /// When protection was stopped.
        stopped: Timestamp,
    },
    /// Protection stopped with *delete data*: the points are soft-deleted (the vault holds a
    /// [`SoftDeleteMarker`](blockvault_core::SoftDeleteMarker)); `undelete` brings them back
    /// (as `Stopped`) until `purge_after`, when they are purged.
    SoftDeleted {
        stopped: Timestamp,
        /// When the data was deleted.
        deleted: Timestamp,
        /// `deleted` + [`SOFT_DELETE_DAYS`](blockvault_core::SOFT_DELETE_DAYS) days.
        purge_after: Timestamp,
    },
}

impl ProtectionState {
    /// The state of data deleted at `deleted` (protection stopped at `stopped`).
    pub fn soft_deleted(stopped: Timestamp, deleted: Timestamp) -> ProtectionState {
        ProtectionState::SoftDeleted {
            stopped,
            deleted,
            purge_after: deleted
                + SignedDuration::from_hours(24 * blockvault_core::SOFT_DELETE_DAYS),
        }
    }

    /// The stable key: `protected`, `stopped` or `soft-deleted` (catalog, JSON).
    pub fn key(&self) -> &'static str {
        match self {
            ProtectionState::Protected => "protected",
            ProtectionState::Stopped { .. } => "stopped",
            ProtectionState::SoftDeleted { .. } => "soft-deleted",
        }
    }

    /// When the soft-deleted data is purged, if it is soft-deleted.
    pub fn purge_after(&self) -> Option<Timestamp> {
        match self {
            ProtectionState::SoftDeleted { purge_after, .. } => Some(*purge_after),
            _ => None,
        }
    }
}
