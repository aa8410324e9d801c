//! Restores through the engine: the point is chosen among both tiers, read from the snapshot
//! tier when it is there (instant restore: nothing read from the vault), else from the vault,
//! and every restore is a `Restore` job.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use blockvault_core::DiskFormat;
use blockvault_core::{BlockMap, DiskRecord, RecoveryPoint};
use blockvault_vault::{PointSelector, Progress, RestoreReport, RestoreRequest, Vault};
use jiff::Timestamp;

use super::Engine;
use super::clone_restore::{Cloned, DiskRestore, cloned_names, merge, restore_by_clone};
use super::disk_state::{DiskState, DiskStates, FileStat};
use super::restore_format::{Staged, restore_formats};
use crate::{Error, Job, Operation, Result, Tier, Tiers};

/// How a restore went.
#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    pub job: Job,
    pub report: RestoreReport,
    /// The tier the blocks were read from.
    pub tier: Tier,
    pub warnings: Vec<String>,
    /// How each disk was restored (by clone from the snapshot tier, or from a tier's chunks),
    /// in the order of `report.disks`.
    pub restored_by: Vec<DiskRestore>,
}

impl Engine {
    /// Restores `request.point` of `request.vm` as a `Restore` job: from the snapshot tier when
    /// the point lives there, else from `vault` (`None` when the vault could not be opened:
    /// snapshot points still restore). If reading the snapshot tier fails and the vault has
    /// the point, the restore is retried from the vault, with a warning.
    ///
    /// `from` limits the choice to one tier (for example to prove the vault copy restores):
    /// the point is then selected among that tier's points and read only from it.
    ///
    /// Each disk is written in the format its point recorded (a disk read from a qcow2 image
    /// comes back as a qcow2 file): see [`Engine::restore_as`] to choose.
    pub async fn restore(
        &self,
        vault: Option<&Vault>,
        request: &RestoreRequest,
        from: Option<Tier>,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreOutcome> {
        self.restore_as(vault, request, from, None, progress).await
    }

    /// [`Engine::restore`], every disk written as `format` when given (else as its point
    /// recorded; see `restore_format.rs`). In place, only raw.
    pub async fn restore_as(
        &self,
        vault: Option<&Vault>,
        request: &RestoreRequest,
        from: Option<Tier>,
        format: Option<DiskFormat>,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreOutcome> {
        let vm = &request.vm;
        // Soft-deleted points are listed, not restored: undelete first.
        self.refuse_soft_deleted(vault, vm).await?;
        // So are forgotten points (see `forget.rs`).
        self.refuse_forgotten(vault, vm, &request.point).await?;
        let (job, job_lock) = self.begin_job(vm, Operation::Restore, &[]).await?;
        let progress = self.progress(vec![job.clone()], progress);
        let result = self
            .restore_job(vault, request, from, format, progress)
            .await;
        match &result {
            Ok((report, _, warnings, _)) => {
                self.warnings(&job).extend(warnings.iter().cloned());
                self.finish_job(&job, Some(&report.point.id)).await?;
            }
            Err(e) => self.fail_job(&job, &e.to_string()).await?,
        }
        job_lock.remove();
        let (report, tier, warnings, restored_by) = result?;
        let id = job.id;
        Ok(RestoreOutcome {
            job: self.db(move |c| c.job(id)).await?,
            report,
            tier,
            warnings,
            restored_by,
        })
    }

    async fn restore_job(
        &self,
        vault: Option<&Vault>,
        request: &RestoreRequest,
        from: Option<Tier>,
        format: Option<DiskFormat>,
        progress: Arc<dyn Progress>,
    ) -> Result<(RestoreReport, Tier, Vec<String>, Vec<DiskRestore>)> {
        let vm = &request.vm;
        // Shared with other readers of the VM's snapshot tier, so no expiry or sweep deletes
        // what this restore reads; exclusive in place, so no Snapshot reads a half-restored
        // disk and no two in-place restores of the VM interleave.
        let _held = self.lock_snapshots(vm, request.in_place).await?;
        let (mut found, mut warnings) = self.find_points(vault, vm, from).await?;
        // Forgotten points are not chosen by time or as the newest.
        let forgotten = self.forgotten_points(vault, vm).await?;
        found
            .points
            .retain(|p| !forgotten.iter().any(|m| m.point == p.id));
        if let Some(only) = from {
            let tiers = found.tiers.clone();
            found
                .points
                .retain(|p| tiers.get(&p.id).is_some_and(|t| t.has(only)));
            for tiers in found.tiers.values_mut() {
                *tiers = Tiers::default().with(only, tiers.has(only));
            }
            if found.points.is_empty() {
                return Err(Error::NoPointsInTier {
                    vm: vm.clone(),
                    tier: only,
                });
            }
        }
        // A point asked for by id whose vault record is damaged: say so, by its name.
        if let PointSelector::Id(text) = &request.point
            && !text.is_empty()
            && !found.points.iter().any(|p| p.id.as_str().starts_with(text))
            && let Some(damaged) = found
                .damaged
                .iter()
                .find(|d| d.id.as_str().starts_with(text))
            && let Some(vault) = vault
        {
            vault
                .store()
                .get_point(vm, &damaged.id)
                .await
                .map_err(|e| Error::from(blockvault_vault::Error::from(e)))?;
        }
        let point = request
            .point
            .select(vm, &found.points)
            .map_err(Error::from)?;
        // Passed over for an older point: a newer record that cannot be read.
        for damaged in &found.damaged {
            let asked_for = match &request.point {
                PointSelector::Latest => true,
                PointSelector::At(at) => damaged.id.time().is_some_and(|t| t <= *at),
                PointSelector::Id(_) => false,
            };
            if asked_for && damaged.id > point.id {
                warnings.push(format!(
                    "point {} of VM {vm} is newer but damaged ({}); restored point {} instead",
                    damaged.id, damaged.problem, point.id
                ));
            }
        }
        let tiers = found.tiers(&point.id);
        let mut exact = RestoreRequest {
            point: PointSelector::Id(point.id.to_string()),
            ..request.clone()
        };
        let states = DiskStates::new(&self.state);
        let formats = restore_formats(request, point, format)?;
        let staged = Staged::new(request, point, &formats)?;
        if let Some(staged) = &staged {
            exact = staged.request(&exact);
        }
        if request.in_place {
            // Disks whose content is on record need no scan. Every record of a target goes
            // before anything is written: a restore that stops halfway leaves none behind.
            for disk in &point.disks {
                let path = request.target.join(disk.name.as_str());
                if let Some(state) = states.lookup(&path)
                    && let Some(map) = self.recorded_map(vault, &state).await
                {
                    exact.known_content.insert(disk.name.clone(), map);
                }
                states.forget(&path).map_err(|e| Error::lock(&path, e))?;
            }
        }
        let (mut report, tier, mut restored_by) = self
            .read_point(
                vault,
                exact,
                point,
                tiers,
                &formats,
                progress,
                &mut warnings,
            )
            .await?;
        if let Some(staged) = staged {
            (report, restored_by) = tokio::task::spawn_blocking(move || {
                staged
                    .finish(&mut report, &mut restored_by)
                    .map(|()| (report, restored_by))
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
        }
        if request.in_place {
            for (disk, restored) in report.point.disks.iter().zip(&report.disks) {
                record_written(&states, &report.point, disk, &restored.path).await;
            }
        }
        Ok((report, tier, warnings, restored_by))
    }

    /// Restores the point `exact` names (`point`) from the snapshot tier when it is there: by
    /// clone where its disks have kept clones (see `clone_restore.rs`), else from its chunks
    /// (falling back to the vault if that fails and the vault has it); else from the vault.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private step of restore_job, given what it decided"
    )]
    async fn read_point(
        &self,
        vault: Option<&Vault>,
        mut exact: RestoreRequest,
        point: &RecoveryPoint,
        tiers: Tiers,
        formats: &[DiskFormat],
        progress: Arc<dyn Progress>,
        warnings: &mut Vec<String>,
    ) -> Result<(RestoreReport, Tier, Vec<DiskRestore>)> {
        let (vm, id) = (&exact.vm, &point.id);
        let started = Instant::now();
        let mut cloned = None;
        if tiers.has(Tier::Snapshot)
            && let Some(local) = self.snapshots.open(vm).await?
        {
            let mut by_clone = {
                let (tier, point, request) = (self.snapshots.clone(), point.clone(), exact.clone());
                let formats = formats.to_vec();
                tokio::task::spawn_blocking(move || {
                    restore_by_clone(&tier, &point, &request, &formats)
                })
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            };
            warnings.append(&mut by_clone.warnings);
            if by_clone.complete() {
                let disks: Vec<_> = by_clone.disks.into_iter().flatten().collect();
                let (disks, how) = disks.into_iter().unzip();
                let report = RestoreReport {
                    point: point.clone(),
                    disks,
                    elapsed: started.elapsed(),
                    repairs: Default::default(),
                };
                return Ok((report, Tier::Snapshot, how));
            }
            // In place, the disks rolled back by clone hold the point: not scanned, not written.
            for name in cloned_names(&by_clone, point) {
                let disk = point.disks.iter().find(|d| d.name == name);
                if let Some(disk) = disk
                    && let Ok(map) = local
                        .store()
                        .get_map(vm, id, &disk.name, Some(&disk.map_digest))
                        .await
                {
                    exact.known_content.insert(name, map);
                }
            }
            cloned = Some(by_clone);
            match local
                .restore(&exact, Arc::clone(&progress))
                .await
                .map_err(blockvault_vault::Error::from)
            {
                Ok(report) => return Ok(with_clones(report, cloned, started, Tier::Snapshot)),
                Err(e) if tiers.has(Tier::Vault) && vault.is_some() && !is_target_error(&e) => {
                    warnings.push(format!(
                        "the snapshot tier could not restore point {id}: {e}; restored from the \
                         vault instead"
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some(vault) = vault else {
            return Err(Error::from(blockvault_repo::Error::UnknownPoint {
                vm: vm.clone(),
                point: format!("{id} (only in the vault, which could not be opened)"),
            }));
        };
        let report = vault.restore(&exact, progress).await.map_err(Error::from)?;
        Ok(with_clones(report, cloned, started, Tier::Vault))
    }

    /// The block map a disk record names, from the snapshot tier or else the vault, checked
    /// against the record's digest; `None` when neither has it intact (then the disk is
    /// scanned).
    async fn recorded_map(&self, vault: Option<&Vault>, state: &DiskState) -> Option<BlockMap> {
        let local = self.snapshots.open(&state.vm).await.ok().flatten();
        let stores = local
            .iter()
            .map(|l| l.store())
            .chain(vault.map(Vault::store));
        for store in stores {
            if let Ok(map) = store
                .get_map(
                    &state.vm,
                    &state.point,
                    &state.disk,
                    Some(&state.map_digest),
                )
                .await
            {
                return Some(map);
            }
        }
        None
    }
}

/// A restore from the chunks of `tier`, with the disks `cloned` (if any) restored by clone.
fn with_clones(
    mut report: RestoreReport,
    cloned: Option<Cloned>,
    started: Instant,
    tier: Tier,
) -> (RestoreReport, Tier, Vec<DiskRestore>) {
    let (disks, how) = merge(
        cloned.unwrap_or_default(),
        std::mem::take(&mut report.disks),
    );
    report.disks = disks;
    report.elapsed = started.elapsed();
    (report, tier, how)
}

/// Errors about the restore target: another tier would fail the same way.
fn is_target_error(e: &blockvault_vault::Error) -> bool {
    use blockvault_repo::Error as R;
    use blockvault_vault::Error as E;
    matches!(
        e,
        E::Io { .. }
            | E::Repo(
                R::TargetExists { .. }
                    | R::TargetNotAFile { .. }
                    | R::TargetMissing { .. }
                    | R::Io { .. }
            )
    )
}

/// Records that the disk file at `path`, just written by an in-place restore of `point`, holds
/// `disk`'s map: once its last change is [`MARGIN`](super::disk_state::MARGIN) old (waiting
/// out the rest, a few tens of ms) and if nothing touched it meanwhile.
async fn record_written(
    states: &DiskStates,
    point: &RecoveryPoint,
    disk: &DiskRecord,
    path: &Path,
) {
    let Ok(before) = FileStat::of(path) else {
        return;
    };
    tokio::time::sleep(before.settles_in()).await;
    let taken = Timestamp::now();
    let (Ok(stat), Ok(canonical)) = (FileStat::of(path), std::fs::canonicalize(path)) else {
        return;
    };
    if stat == before && stat.settled_at(taken) {
        states.record(&DiskState {
            boot: super::disk_state::boot_id(),
            path: canonical,
            stat,
            taken,
            vm: point.vm.clone(),
            point: point.id.clone(),
            disk: disk.name.clone(),
            map_digest: disk.map_digest.clone(),
        });
    }
}
