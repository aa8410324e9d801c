//! Which points a VM has, in both tiers: what `points` lists (with each point's tiers, when it
//! leaves the snapshot tier and what its kept clones hold) and what a restore chooses among.
//! The stores are the truth: the catalog's view of both tiers is rebuilt from them here.

use std::collections::BTreeMap;

use blockvault_core::{PointId, RecoveryPoint, VaultConfig, VmName};
use blockvault_snapshot::{SnapshotTier, TierSpace};
use blockvault_store::DamagedPoint;
use blockvault_vault::Vault;
use jiff::Timestamp;

use super::Engine;
use crate::{Error, PointSummary, Result, Tier, Tiers};

/// A recovery point and the tiers it lives in.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListedPoint {
    /// The vault's record when the point is in the vault (its byte counts say what the vault
    /// stored), else the snapshot tier's.
    #[serde(flatten)]
    pub point: RecoveryPoint,
    pub tiers: Tiers,
    /// When the point leaves the snapshot tier, if it is there.
    pub snapshot_expires: Option<Timestamp>,
    /// What the point's kept clones in the snapshot tier hold alone (what its disks overwrote
    /// since): the space deleting them frees; `None` when it has none.
    pub snapshot_clone_bytes: Option<u64>,
}

/// What `points` shows of a VM: its points in both tiers, the vault's records that cannot be
/// read, and what went wrong on the way.
#[derive(Clone, Debug, Default)]
pub struct PointList {
    /// Oldest first.
    pub points: Vec<ListedPoint>,
    /// Vault records that cannot be read: each hides only its own point.
    pub damaged: Vec<DamagedPoint>,
    pub warnings: Vec<String>,
    /// What the VM's snapshot tier takes on this host, its kept clones counted by what they
    /// hold alone; `None` when it could not be measured (see the warnings).
    pub snapshot_space: Option<TierSpace>,
}

/// The points of a VM in both tiers, oldest first.
#[derive(Clone, Debug, Default)]
pub(super) struct TieredPoints {
    pub(super) points: Vec<RecoveryPoint>,
    pub(super) tiers: BTreeMap<PointId, Tiers>,
    /// The vault's damaged records.
    pub(super) damaged: Vec<DamagedPoint>,
}

impl TieredPoints {
    /// Adds the points of one tier; a point already known keeps the record added first.
    fn add(&mut self, points: Vec<RecoveryPoint>, tier: Tier) {
        for point in points {
            let tiers = self.tiers.entry(point.id.clone()).or_default();
            if tiers.is_empty() {
                self.points.push(point);
            }
            *tiers = tiers.with(tier, true);
        }
    }

    pub(super) fn sort(&mut self) {
        self.points
            .sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    }

    pub(super) fn tiers(&self, id: &PointId) -> Tiers {
        self.tiers.get(id).copied().unwrap_or_default()
    }
}

/// Whether snapshot-tier point `point` was taken for the vault `config` describes (or for the
/// primary this location replicates), or names no vault.
fn is_for(point: &RecoveryPoint, config: &VaultConfig) -> bool {
    point.vault.as_ref().is_none_or(|id| {
        *id == config.id || config.replica_of.as_ref().is_some_and(|r| *id == r.vault)
    })
}

impl Engine {
    /// The points of `vm` in the snapshot tier and, when given, in `vault`, oldest first, with
    /// their tiers; the catalog's view of both tiers is rebuilt from them on the way (the
    /// stores are the truth), with the vault's damaged records and warnings (an unreadable
    /// tier).
    pub async fn list_points(&self, vault: Option<&Vault>, vm: &VmName) -> Result<PointList> {
        let listed = {
            // Listing and syncing the catalog under the shared snapshot lock: a Snapshot that
            // commits meanwhile cannot have its catalog row wiped by a stale listing.
            let _shared = self.lock_snapshots(vm, false).await?;
            self.find_points(vault, vm, None).await
        };
        let (found, mut warnings) = listed?;
        let in_tier: Vec<PointId> = found
            .points
            .iter()
            .filter(|p| found.tiers(&p.id).has(Tier::Snapshot))
            .map(|p| p.id.clone())
            .collect();
        let (clone_bytes, snapshot_space) = {
            let (tier, vm) = (self.snapshots.clone(), vm.clone());
            tokio::task::spawn_blocking(move || space_of(&tier, &vm, &in_tier))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
        };
        let snapshot_space = snapshot_space
            .map_err(|e| warnings.push(format!("the snapshot tier's space of {vm}: {e}")))
            .ok();
        let owned = vm.clone();
        let expiry: BTreeMap<PointId, Option<Timestamp>> = self
            .db(move |c| c.points(&owned))
            .await?
            .into_iter()
            .map(|p| (p.id, p.snapshot_expires))
            .collect();
        let listed = found
            .points
            .iter()
            .map(|point| {
                let tiers = found.tiers(&point.id);
                ListedPoint {
                    point: point.clone(),
                    tiers,
                    snapshot_expires: tiers
                        .has(Tier::Snapshot)
                        .then(|| expiry.get(&point.id).copied().flatten())
                        .flatten(),
                    snapshot_clone_bytes: clone_bytes.get(&point.id).copied(),
                }
            })
            .collect();
        Ok(PointList {
            points: listed,
            damaged: found.damaged,
            warnings,
            snapshot_space,
        })
    }

    /// What `vm`'s snapshot tier takes on this host, its kept clones counted by what they hold
    /// alone (see [`SnapshotTier::space`]).
    pub async fn snapshot_space(&self, vm: &VmName) -> Result<TierSpace> {
        let (tier, vm) = (self.snapshots.clone(), vm.clone());
        tokio::task::spawn_blocking(move || tier.space(&vm))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            .map_err(Error::from)
    }

    /// The points of `vm` in both tiers; call with the VM's snapshot lock held (shared).
    pub(super) async fn find_points(
        &self,
        vault: Option<&Vault>,
        vm: &VmName,
        from: Option<Tier>,
    ) -> Result<(TieredPoints, Vec<String>)> {
        let mut found = TieredPoints::default();
        let mut warnings = Vec::new();
        let local = match self.snapshots.points(vm).await {
            Ok(mut local) => {
                // The catalog's view of the tier is the whole tier's.
                let summaries: Vec<PointSummary> = local.iter().map(PointSummary::from).collect();
                let owned = vm.clone();
                self.db(move |c| c.sync_tier(&owned, Tier::Snapshot, &summaries))
                    .await?;
                // The tier holds the VM's points for every vault it was backed up to: only
                // this vault's (and those recorded before points named their vault).
                if let Some(vault) = vault {
                    local.retain(|p| is_for(p, vault.config()));
                }
                local
            }
            // Without the vault, an encrypted tier that does not unlock is the answer.
            Err(e) if vault.is_none() && e.kind() == blockvault_core::ErrorKind::Locked => {
                return Err(e.into());
            }
            Err(e) => {
                warnings.push(format!("the snapshot tier of {vm} is unreadable: {e}"));
                Vec::new()
            }
        };
        if let Some(vault) = vault {
            match vault.store().list_points(vm).await {
                Ok(remote) => {
                    let summaries: Vec<PointSummary> =
                        remote.points.iter().map(PointSummary::from).collect();
                    let owned = vm.clone();
                    self.db(move |c| c.sync_tier(&owned, Tier::Vault, &summaries))
                        .await?;
                    found.add(remote.points, Tier::Vault);
                    found.damaged = remote.damaged;
                }
                // Without the vault, the snapshot tier alone can still answer, unless the
                // vault was asked for.
                Err(e) if !local.is_empty() && from != Some(Tier::Vault) => {
                    warnings.push(format!(
                        "the vault is unreadable, using snapshots only: {e}"
                    ));
                }
                Err(e) => return Err(blockvault_vault::Error::from(e).into()),
            }
        }
        found.add(local, Tier::Snapshot);
        if found.points.is_empty() && found.damaged.is_empty() {
            return Err(Error::from(blockvault_repo::Error::UnknownVm {
                vm: vm.clone(),
            }));
        }
        found.sort();
        Ok((found, warnings))
    }
}

/// What the kept clones of `vm`'s snapshot points `points` hold alone (those that have
/// clones), and what the VM's snapshot tier takes. Blocking.
fn space_of(
    tier: &SnapshotTier,
    vm: &VmName,
    points: &[PointId],
) -> (
    BTreeMap<PointId, u64>,
    blockvault_snapshot::Result<TierSpace>,
) {
    let clones = points
        .iter()
        .filter_map(|id| Some((id.clone(), tier.clone_bytes(vm, id).ok().flatten()?)))
        .collect();
    (clones, tier.space(vm))
}
