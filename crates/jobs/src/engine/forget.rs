//! Forgetting chosen recovery points (`blockvault forget`), undeleting them, and their purge.
//!
//! A forget is a user's deletion, so it is a soft delete, as stopping protection with *delete
//! data* is, but of single points:
//!
//! - **Forget**: a `Forget recovery points` job writes a
//!   [`PointDeleteMarker`] per point into the vault (`deleted-points/<vm>/<point>`, so any host
//!   reading the vault sees it) and removes the points' copies from this host's snapshot tier
//!   at once (a forgotten point must not restore from there either). The vault points stay
//!   whole for [`SOFT_DELETE_DAYS`](blockvault_core::SOFT_DELETE_DAYS) days: listed as
//!   soft-deleted, refused by restore, left alone by retention, and brought back by
//!   [`Engine::undelete_points`]. What to forget is one point ([`ForgetTarget::Point`]) or what
//!   ad-hoc keep rules do not keep ([`ForgetTarget::Keep`], restic-like counts, see
//!   [`keep`](blockvault_policy::keep)). A dry run says the same and writes nothing (no job).
//! - **Rules by protection**: keep rules are refused for a VM protected in this vault (its
//!   policy's retention decides: [`Error::KeepRulesOfProtected`]); one named point is
//!   allowed, but the newest point of a protected VM only with `force`
//!   ([`Error::NewestOfProtected`]: retention always keeps it). A VM whose whole data is
//!   soft-deleted is refused ([`Error::SoftDeleted`]). A forgotten point is not forgotten again
//!   ([`Error::PointSoftDeleted`]).
//! - **Purge**: once a marker's period is over, [`Engine::purge_forgotten`] (run by the daemon
//!   for every vault this host knows) deletes the point (record first, then maps:
//!   [`Store::delete_point`]) and then the marker, in a `Delete backup data` job per VM. Only
//!   then do the point's chunks become garbage for the collector. A purge cut short leaves
//!   markers whose points may be gone; the next purge finishes them.
//!
//! [`Store::delete_point`]: blockvault_store::Store::delete_point

use blockvault_core::{HeldState, PointDeleteMarker, PointId, RecoveryPoint, VmName};
use blockvault_policy::{KeepRule, KeepRules, RetainedPoint, keep};
use blockvault_vault::{PointSelector, Vault};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::{Engine, Holding, PurgeOutcome};
use crate::{Error, Job, Operation, Result, Tier};

/// What to forget of a VM's vault points.
#[derive(Clone, Debug)]
pub enum ForgetTarget {
    /// One point: by id (or a unique prefix), or the newest at or before a time.
    Point(PointSelector),
    /// Every point the rules do not keep (their local dates in `timezone`).
    Keep {
        rules: KeepRules,
        timezone: TimeZone,
    },
}

/// A forget request (see the module doc).
#[derive(Clone, Debug)]
pub struct ForgetRequest {
    pub vm: VmName,
    pub target: ForgetTarget,
    /// Say what would be forgotten; write nothing.
    pub dry_run: bool,
    /// Allow forgetting the newest point of a protected VM.
    pub force: bool,
}

/// A point the keep rules keep, and why.
#[derive(Clone, Debug, Serialize)]
pub struct KeptPoint {
    pub id: PointId,
    pub time: Timestamp,
    pub kept_by: Vec<KeepRule>,
}

/// What a forget did (or, in a dry run, would do).
#[derive(Debug)]
pub struct ForgetOutcome {
    pub vm: VmName,
    pub dry_run: bool,
    /// The `Forget recovery points` job (none in a dry run, or when nothing was to go).
    pub job: Option<Job>,
    /// The markers written (in a dry run, as they would be), oldest point first.
    pub forgotten: Vec<PointDeleteMarker>,
    /// Keep rules only: the points they keep, oldest first.
    pub kept: Vec<KeptPoint>,
    /// Points forgotten before, left as they are.
    pub already_forgotten: Vec<PointDeleteMarker>,
    /// Snapshot-tier copies removed from this host.
    pub snapshot_points_removed: Vec<PointId>,
}

impl Engine {
    /// Forgets points of `request.vm` in `vault` (at `location`, as the catalog names it):
    /// see the module doc for what it writes and refuses. A VM with no point in the vault is
    /// not found; so is a point no selector matches.
    pub async fn forget(
        &self,
        vault: &Vault,
        location: &str,
        request: &ForgetRequest,
    ) -> Result<ForgetOutcome> {
        let vm = &request.vm;
        self.refuse_soft_deleted(Some(vault), vm).await?;
        let owned = vm.clone();
        let item = self
            .db(move |c| c.protected_item(&owned))
            .await?
            .filter(|item| item.is_protected() && item.vault == location);
        // Protected here (the catalog), or by another host (the vault's protection record):
        // either way a policy's retention decides, not keep rules.
        let policy: Option<String> =
            match item {
                Some(item) => Some(item.policy.to_string()),
                None => match self.holding(vault, vm).await? {
                    Holding::Theirs(record) if record.state == HeldState::Protected => Some(
                        format!("{} (held by {})", record.policy, record.host.describe()),
                    ),
                    _ => None,
                },
            };
        let store = vault.store();
        let points = store.list_points(vm).await?.points;
        if points.is_empty() {
            return Err(blockvault_repo::Error::UnknownVm { vm: vm.clone() }.into());
        }
        let already = store.point_deletes(vm).await?;
        let is_forgotten = |id: &PointId| already.iter().any(|m| m.point == *id);
        let live: Vec<RecoveryPoint> = points
            .iter()
            .filter(|p| !is_forgotten(&p.id))
            .cloned()
            .collect();
        let now = self.now();
        let mut kept = Vec::new();
        let chosen: Vec<&RecoveryPoint> = match &request.target {
            ForgetTarget::Point(selector) => {
                // By id among every point, so a forgotten one is said to be; by time among
                // the points still there.
                let among = match selector {
                    PointSelector::Id(_) => &points,
                    _ => &live,
                };
                let point = selector.select(vm, among).map_err(Error::from)?;
                if let Some(marker) = already.iter().find(|m| m.point == point.id) {
                    return Err(Error::PointSoftDeleted {
                        vm: vm.clone(),
                        point: point.id.clone(),
                        purge_after: marker.purge_after,
                    });
                }
                let newest = live.last().map(|p| &p.id);
                if policy.is_some() && !request.force && newest == Some(&point.id) {
                    return Err(Error::NewestOfProtected {
                        vm: vm.clone(),
                        point: point.id.clone(),
                    });
                }
                vec![point]
            }
            ForgetTarget::Keep { rules, timezone } => {
                rules.check().map_err(Error::KeepRules)?;
                if let Some(policy) = &policy {
                    return Err(Error::KeepRulesOfProtected {
                        vm: vm.clone(),
                        policy: policy.clone(),
                    });
                }
                let retained: Vec<RetainedPoint> = live.iter().map(RetainedPoint::from).collect();
                let mut chosen = Vec::new();
                for (verdict, point) in keep(&retained, rules, timezone, now).into_iter().zip(&live)
                {
                    if verdict.keep() {
                        kept.push(KeptPoint {
                            id: point.id.clone(),
                            time: point.time,
                            kept_by: verdict.kept_by,
                        });
                    } else {
                        chosen.push(point);
                    }
                }
                chosen
            }
        };
        let forgotten: Vec<PointDeleteMarker> = chosen
            .iter()
            .map(|p| PointDeleteMarker::new(vm.clone(), p.id.clone(), now))
            .collect();
        let mut outcome = ForgetOutcome {
            vm: vm.clone(),
            dry_run: request.dry_run,
            job: None,
            forgotten,
            kept,
            already_forgotten: already.clone(),
            snapshot_points_removed: Vec::new(),
        };
        if request.dry_run || outcome.forgotten.is_empty() {
            return Ok(outcome);
        }

        let (job, job_lock) = self.begin_job(vm, Operation::ForgetPoints, &[]).await?;
        let work = async {
            // The vault first: from here on every reader of the vault sees the points deleted.
            for marker in &outcome.forgotten {
                store.put_point_delete(marker).await?;
            }
            // So the daemon's purge finds this vault.
            let (at, id) = (location.to_owned(), vault.config().id.clone());
            self.db(move |c| {
                if c.vault_id(&at)?.as_ref() != Some(&id) {
                    c.remember_vault(&at, &id, now)?;
                }
                Ok(())
            })
            .await?;
            let ids: Vec<PointId> = outcome.forgotten.iter().map(|m| m.point.clone()).collect();
            self.remove_snapshot_copies(vm, &ids).await
        };
        match work.await {
            Ok(removed) => {
                outcome.snapshot_points_removed = removed;
                outcome.job = Some(self.finish_job(&job, None).await?);
                job_lock.remove();
                Ok(outcome)
            }
            Err(error) => {
                self.fail_job(&job, &error.to_string()).await?;
                job_lock.remove();
                Err(error)
            }
        }
    }

    /// The forgotten points of `vm` in `vault`, oldest first (none without a vault).
    pub async fn forgotten_points(
        &self,
        vault: Option<&Vault>,
        vm: &VmName,
    ) -> Result<Vec<PointDeleteMarker>> {
        match vault {
            Some(vault) => Ok(vault.store().point_deletes(vm).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Brings back forgotten points of `vm` before their purge: the one `point` names (an id
    /// or a unique prefix), or every one. Their markers are removed; the points restore again
    /// (from the vault: their snapshot-tier copies are gone). Refused: nothing forgotten
    /// ([`Error::PointNotSoftDeleted`]); a point whose period is over
    /// ([`Error::SoftDeletePeriodOver`]: it is due for purge).
    pub async fn undelete_points(
        &self,
        vault: &Vault,
        vm: &VmName,
        point: Option<&str>,
    ) -> Result<Vec<PointDeleteMarker>> {
        let store = vault.store();
        let markers = store.point_deletes(vm).await?;
        let not_forgotten = || Error::PointNotSoftDeleted {
            vm: vm.clone(),
            point: point.map(str::to_owned),
        };
        let chosen: Vec<PointDeleteMarker> = match point {
            Some(text) => {
                let ids: Vec<PointId> = markers.iter().map(|m| m.point.clone()).collect();
                let id = find_id(text, &ids).ok_or_else(not_forgotten)?;
                markers.into_iter().filter(|m| m.point == id).collect()
            }
            None => markers,
        };
        if chosen.is_empty() {
            return Err(not_forgotten());
        }
        let now = self.now();
        if let Some(over) = chosen.iter().find(|m| m.purge_due(now)) {
            return Err(Error::SoftDeletePeriodOver {
                vm: vm.clone(),
                purge_after: over.purge_after,
            });
        }
        for marker in &chosen {
            store.remove_point_delete(vm, &marker.point).await?;
        }
        Ok(chosen)
    }

    /// Purges the forgotten points of `vault` whose soft-delete period is over, VM by VM, each
    /// in a `Delete backup data` job: the point (record, then maps), its snapshot-tier copy if
    /// one is left, then its marker. One result per VM with points due.
    pub async fn purge_forgotten(&self, vault: &Vault) -> Result<Vec<PurgeOutcome>> {
        let store = vault.store();
        let now = self.now();
        let mut done = Vec::new();
        for vm in store.point_delete_vms().await? {
            let due: Vec<PointDeleteMarker> = store
                .point_deletes(&vm)
                .await?
                .into_iter()
                .filter(|m| m.purge_due(now))
                .collect();
            if due.is_empty() {
                continue;
            }
            let (job, job_lock) = self
                .begin_job(&vm, Operation::DeleteBackupData, &[])
                .await?;
            let mut deleted = Vec::new();
            let work = async {
                let ids: Vec<PointId> = due.iter().map(|m| m.point.clone()).collect();
                self.remove_snapshot_copies(&vm, &ids).await?;
                for marker in &due {
                    store.delete_point(&vm, &marker.point).await?;
                    let (owned, id) = (vm.clone(), marker.point.clone());
                    self.db(move |c| c.remove_point_tier(&owned, &id, Tier::Vault))
                        .await?;
                    store.remove_point_delete(&vm, &marker.point).await?;
                    deleted.push(marker.point.clone());
                }
                Ok::<(), Error>(())
            };
            let failure = match work.await {
                Ok(()) => {
                    self.finish_job(&job, None).await?;
                    None
                }
                Err(error) => {
                    self.fail_job(&job, &error.to_string()).await?;
                    Some(error)
                }
            };
            job_lock.remove();
            let id = job.id;
            done.push(PurgeOutcome {
                vm,
                job: self.db(move |c| c.job(id)).await?,
                points_deleted: deleted,
                failure,
            });
        }
        Ok(done)
    }

    /// [`Error::PointSoftDeleted`] when `selector` names a forgotten point of `vm` by id
    /// (restore refuses it: undelete first). Other selectors pass: the points they choose
    /// among leave forgotten ones out ([`Engine::forgotten_points`]).
    pub(super) async fn refuse_forgotten(
        &self,
        vault: Option<&Vault>,
        vm: &VmName,
        selector: &PointSelector,
    ) -> Result<()> {
        let PointSelector::Id(text) = selector else {
            return Ok(());
        };
        let markers = self.forgotten_points(vault, vm).await?;
        let ids: Vec<PointId> = markers.iter().map(|m| m.point.clone()).collect();
        match find_id(text, &ids).and_then(|id| markers.into_iter().find(|m| m.point == id)) {
            Some(marker) => Err(Error::PointSoftDeleted {
                vm: vm.clone(),
                point: marker.point,
                purge_after: marker.purge_after,
            }),
            None => Ok(()),
        }
    }

    /// Removes the snapshot-tier copies among `ids` of `vm` under the VM's exclusive snapshot
    /// lock (and the chunks only they named); the ids removed.
    async fn remove_snapshot_copies(&self, vm: &VmName, ids: &[PointId]) -> Result<Vec<PointId>> {
        let _held = self.lock_snapshots(vm, true).await?;
        let present: Vec<PointId> = self
            .snapshots
            .points(vm)
            .await?
            .into_iter()
            .map(|p| p.id)
            .filter(|id| ids.contains(id))
            .collect();
        if !present.is_empty() {
            self.snapshots.expire(vm, &present).await?;
        }
        let (owned, removed) = (vm.clone(), present.clone());
        self.db(move |c| {
            for id in &removed {
                c.remove_point_tier(&owned, id, Tier::Snapshot)?;
            }
            Ok(())
        })
        .await?;
        Ok(present)
    }
}

/// The id among `ids` that `text` names: equal to it, or the only one starting with it.
fn find_id(text: &str, ids: &[PointId]) -> Option<PointId> {
    if let Some(exact) = ids.iter().find(|id| id.as_str() == text) {
        return Some(exact.clone());
    }
    let mut matching = ids
        .iter()
        .filter(|id| !text.is_empty() && id.as_str().starts_with(text));
    match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}
