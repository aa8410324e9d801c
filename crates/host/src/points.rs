//! What `points` shows: the recovery points of one VM or of every VM in both tiers, what
//! retention says of each, and the point records that cannot be read; and what a read
//! answers from when the vault cannot be opened ([`ReadVault`]): the snapshot tier's copies
//! of the points of a vault this host knows at that location, never another vault's.

use std::collections::HashMap;

use blockvault_core::{PointDeleteMarker, PointId, RecoveryPoint, SoftDeleteMarker, VmName};
use blockvault_jobs::{Engine, ListedPoint, PointList, RetainedPoint, Verdict, retention};
use blockvault_policy::Policy;
use blockvault_snapshot::TierSpace;
use blockvault_store::{DamagedPoint, VaultLocation};
use blockvault_vault::{PointSelector, Vault};
use jiff::Timestamp;

use crate::{Error, Host, Result};

/// The points of the VMs asked for, as `points` shows them.
#[derive(Debug, Default)]
pub struct PointsView {
    /// Every point in either tier, VM by VM (in name order), oldest first.
    pub points: Vec<ListedPoint>,
    /// Vault point records that cannot be read: each hides only its own point.
    pub damaged: Vec<DamagedPoint>,
    /// What the policy's retention says of each vault point of a protected VM.
    pub verdicts: HashMap<PointId, Verdict>,
    /// The VMs whose points something other than their policy's retention holds.
    pub held: HashMap<VmName, Held>,
    /// The points a user forgot (`forget`): soft-deleted until the marker's purge date.
    pub forgotten: HashMap<PointId, PointDeleteMarker>,
    /// Things the user should know (a vault read without, a damaged record, ...).
    pub warnings: Vec<String>,
    /// What each listed VM's snapshot tier takes on this host (kept clones counted by what
    /// they hold alone), VM by VM; a VM whose space could not be measured is left out.
    pub snapshot_space: Vec<(VmName, TierSpace)>,
}

impl PointsView {
    /// Whether retention has anything to say of the VMs listed (a protected, stopped or
    /// soft-deleted VM among them).
    pub fn shows_retention(&self) -> bool {
        !self.verdicts.is_empty() || !self.held.is_empty() || !self.forgotten.is_empty()
    }
}

/// What keeps a VM's points when it is not its policy's retention.
#[derive(Clone, Debug)]
pub enum Held {
    /// Protection stopped with data retained: every point is kept.
    Stopped,
    /// Soft-deleted in `vault`: listed, not restorable, purged after the marker's date.
    SoftDeleted {
        vault: String,
        marker: SoftDeleteMarker,
    },
}

/// "Forever" (the newest point while protected) has no date.
pub fn retained_until(until: Timestamp) -> Option<Timestamp> {
    (until != Timestamp::MAX).then_some(until)
}

/// What a read of a vault (`points`, `restore`) answers from (see [`Host::read_vault`]).
#[derive(Debug)]
pub enum ReadVault {
    /// The vault, open.
    Open(Vault),
    /// The vault cannot be opened (`error`), but this host knows the location: it saw the
    /// vault there as `id`, or backed up `vms` to it (last), so the snapshot tier's copies of
    /// its points answer alone (see [`ReadVault::answers_with`]).
    TierOf {
        id: Option<String>,
        vms: Vec<VmName>,
        error: Error,
    },
}

impl ReadVault {
    /// The vault, when it opened.
    pub fn vault(&self) -> Option<&Vault> {
        match self {
            ReadVault::Open(vault) => Some(vault),
            ReadVault::TierOf { .. } => None,
        }
    }

    /// Whether the snapshot-tier point `point` may answer: any point when the vault is open
    /// (the engine picks the vault's own); else a point taken for the vault this host knows
    /// there (by its id), or one that names no vault (taken while the vault never opened, or
    /// before points named it) of a VM this host last backed up to that location.
    pub fn answers_with(&self, point: &RecoveryPoint) -> bool {
        match self {
            ReadVault::Open(_) => true,
            ReadVault::TierOf { id, vms, .. } => match &point.vault {
                Some(of) => id.as_ref() == Some(of),
                None => vms.contains(&point.vm),
            },
        }
    }

    /// The point of `vm` a restore of `selector` reads, as an exact selector: when the vault is
    /// open, `selector` itself (the engine chooses among both tiers); else chosen among the
    /// tier's copies of this vault's points, and when none fits, the error that kept the
    /// vault closed (the point may well be in the vault).
    pub async fn pin(
        self,
        engine: &Engine,
        vm: &VmName,
        selector: PointSelector,
    ) -> Result<(Option<Vault>, PointSelector)> {
        if let ReadVault::Open(vault) = self {
            return Ok((Some(vault), selector));
        }
        let listed = match engine.list_points(None, vm).await {
            Ok(listed) => listed.points,
            // An encrypted tier that does not unlock: that is the answer (exit 7), not the
            // vault's error.
            Err(e) if e.kind() == blockvault_core::ErrorKind::Locked => return Err(e.into()),
            Err(_) => Vec::new(),
        };
        let points: Vec<RecoveryPoint> = listed
            .into_iter()
            .map(|l| l.point)
            .filter(|p| self.answers_with(p))
            .collect();
        let chosen = selector
            .select(vm, &points)
            .map(|p| PointSelector::Id(p.id.to_string()));
        match (chosen, self) {
            (Ok(exact), _) => Ok((None, exact)),
            (Err(_), ReadVault::TierOf { error, .. }) => Err(error),
            // Not reached: an open vault returned above.
            (Err(e), ReadVault::Open(_)) => Err(Error::from(blockvault_vault::Error::from(e))),
        }
    }
}

impl Host {
    /// The points of `vm` (of every VM when none) in the vault at `location` and the snapshot
    /// tier. When the vault cannot be opened, only a location this host knows (the vault's id
    /// seen there, or VMs backed up to it) answers, from the snapshot tier's copies of its
    /// points, with a warning ([`Host::read_vault`]); when the tier holds none, the vault's
    /// error stands.
    pub async fn points(&self, location: &VaultLocation, vm: Option<VmName>) -> Result<PointsView> {
        let (engine, mut warnings) = self.engine().await?;
        let read = self
            .read_vault(&engine, location, true, &mut warnings)
            .await?;
        let vault = read.vault();
        let all = vm.is_none();
        let vms = match vm {
            Some(vm) => vec![vm],
            None => {
                let mut vms = engine.snapshots().vms().await?;
                if let Some(vault) = vault {
                    vms.extend(vault.vms().await?);
                }
                vms.sort();
                vms.dedup();
                vms
            }
        };
        let mut view = PointsView::default();
        for vm in &vms {
            let listing = engine.list_points(vault, vm).await;
            // Listing every VM skips one that has no points (its first snapshot failed); so
            // does a tier-only answer, where the VM has none of this vault's.
            let no_points = matches!(
                &listing,
                Err(blockvault_jobs::Error::Vault(e)) if matches!(
                    e.as_ref(),
                    blockvault_vault::Error::Repo(blockvault_repo::Error::UnknownVm { .. })
                )
            );
            if no_points && (all || vault.is_none()) {
                continue;
            }
            let mut listing = listing?;
            listing.points.retain(|l| read.answers_with(&l.point));
            if vault.is_none() && listing.points.is_empty() {
                continue;
            }
            let PointList {
                points: listed,
                damaged,
                warnings: listing_warnings,
                snapshot_space,
            } = listing;
            if let Some(space) = snapshot_space.filter(|s| *s != TierSpace::default()) {
                view.snapshot_space.push((vm.clone(), space));
            }
            for record in &damaged {
                warnings.push(format!(
                    "point {} of VM {} is damaged and cannot be restored: {}; `blockvault verify \
                     --vm {} --quarantine-damaged` sets it aside (see README, \"Damage\")",
                    record.id, record.vm, record.problem, record.vm
                ));
            }
            view.damaged.extend(damaged);
            let forgotten = engine.forgotten_points(vault, vm).await?;
            // Soft-deleted (by this host, or by any host: the vault's marker says) or stopped:
            // what holds the points is not the policy's retention.
            if let Some((vault, marker)) = engine.soft_deleted(vault, vm).await? {
                view.held
                    .insert(vm.clone(), Held::SoftDeleted { vault, marker });
            } else {
                // Not protected: kept until deleted. Stopped: held. Protected: its policy.
                let owned = vm.clone();
                let protection = engine
                    .catalog()
                    .call(move |c| {
                        let Some(item) = c.protected_item(&owned)? else {
                            return Ok(None);
                        };
                        match item.is_protected() {
                            true => Ok(Some(Some(c.policy(&item.policy)?))),
                            false => Ok(Some(None)),
                        }
                    })
                    .await?;
                match protection {
                    Some(Some(policy)) => {
                        let live: Vec<ListedPoint> = listed
                            .iter()
                            .filter(|l| !forgotten.iter().any(|m| m.point == l.point.id))
                            .cloned()
                            .collect();
                        view.verdicts
                            .extend(retention_of(&policy, &live, engine.now()));
                    }
                    Some(None) => {
                        view.held.insert(vm.clone(), Held::Stopped);
                    }
                    None => {}
                }
            }
            view.forgotten
                .extend(forgotten.into_iter().map(|m| (m.point.clone(), m)));
            view.points.extend(listed);
            warnings.extend(listing_warnings);
        }
        if let ReadVault::TierOf { error, .. } = read
            && view.points.is_empty()
        {
            return Err(error);
        }
        view.warnings = warnings;
        Ok(view)
    }
}

/// What `policy`'s retention says at `now` of the vault points listed.
fn retention_of(
    policy: &Policy,
    listed: &[ListedPoint],
    now: Timestamp,
) -> Vec<(PointId, Verdict)> {
    let in_vault: Vec<RetainedPoint> = listed
        .iter()
        .filter(|l| l.tiers.vault)
        .map(|l| RetainedPoint::from(&l.point))
        .collect();
    retention(&in_vault, policy, now, true)
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect()
}
