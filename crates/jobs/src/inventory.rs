//! What the catalog knows about VMs and recovery points.

use std::path::PathBuf;

use blockvault_core::{Consistency, PointId, RecoveryPoint, VmName};
use jiff::Timestamp;
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
    /// When protection was configured (the schedule's first slot comes after it).
    pub since: Timestamp,
    /// The scheduled instant of the last slot the scheduler handled (ran, or folded into a
    /// later run after downtime); none before the first.
    pub handled: Option<Timestamp>,
}
