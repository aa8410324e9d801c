//! Backup jobs: the Snapshot subtask into the snapshot tier, then the Transfer subtask to the
//! vault, which opens alongside the Snapshot (see `job_vault`).

use std::path::PathBuf;
use std::sync::Arc;

use blockvault_core::{Capture, Consistency, RecoveryPoint};
use blockvault_vault::{BackupRequest, EarlySend, ParentChoice, Progress, TransferRequest, Vault};
use jiff::{SignedDuration, Timestamp};

use super::disk_state::{self, DiskState, DiskStates, FileStat};
use super::hooks;
use super::job_vault::{JobVault, Opening, Seen, early_send};
use super::lock::Lock;
use super::{BackupOutcome, BackupSpec, Engine, INSTANT_RESTORE_DAYS, Phase, Taken};
use super::{capture, capture_report, disk_size};
use crate::events::{JobEventKind, JobRef, Warnings};
use crate::{PointSummary, Result, SubtaskKind, SubtaskOutcome, Tier};

/// One backup job, as its subtasks see it.
pub(super) struct Run<'j> {
    job: JobRef,
    pub(super) spec: &'j BackupSpec,
    /// The vault's location, as the job was given it.
    pub(super) location: &'j str,
    pub(super) seen: &'j Seen,
    progress: &'j Arc<dyn Progress>,
}

impl Engine {
    /// Runs one backup job: the Snapshot subtask into the snapshot tier (hooks around it, all
    /// disks read while the VM is quiesced), then the Transfer subtask from that snapshot to
    /// `vault`.
    ///
    /// The Snapshot starts at once, whatever the vault does: a vault still opening (see
    /// [`JobVault::opening`]) opens meanwhile, and only the Transfer waits for it, so neither
    /// the freeze nor the point's time moves. A vault that does not open fails the Transfer
    /// with its error.
    ///
    /// At most one Snapshot and one Transfer of a VM run at a time, across processes: a second
    /// Snapshot waits for the first; a Transfer that finds another Transfer of the VM running
    /// is Skipped (the next one carries this point's churn). A failed Snapshot fails the job; a
    /// failed Transfer leaves the job "Completed with warning" and the point in the snapshot
    /// tier. Errors of the job are in the returned job record, not in `Err`: `Err` means the
    /// catalog itself could not be written.
    pub async fn backup<'v>(
        &self,
        vault: impl Into<JobVault<'v>>,
        spec: &BackupSpec,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupOutcome> {
        let now = self.now();
        let (mut opening, seen) = Opening::new(vault.into());
        let disks: Vec<PathBuf> = spec
            .disks
            .iter()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
            .collect();
        // Before the job exists: an error here leaves no job behind.
        let (vm, location) = (spec.vm.clone(), opening.location().to_owned());
        self.db(move |c| c.upsert_vm(&vm, &location, &disks, now))
            .await?;
        let (job, job_lock) = self
            .begin_job(
                &spec.vm,
                spec.operation,
                &[SubtaskKind::Snapshot, SubtaskKind::Transfer],
            )
            .await?;
        let mut warnings = self.warnings(&job);
        // The caller's hook, and the job's progress events.
        let progress = self.progress(vec![job.clone()], progress);

        let location = opening.location().to_owned();
        let run = Run {
            job,
            spec,
            location: &location,
            seen: &seen,
            progress: &progress,
        };
        let mut early = None;
        let snapshot = self.snapshot(&run, &mut early, &mut warnings);
        let taken = opening.alongside(snapshot).await?;
        let mut taken = match taken {
            Ok(taken) => taken,
            Err(error) => {
                // The vault is not needed any more: an early send still waiting for it ends.
                drop(opening);
                if let Some(early) = early {
                    // The job has ended (`Finished` is its last event): kept, not published.
                    warnings.keep(early.abandon().await);
                }
                job_lock.remove();
                let id = run.job.id;
                return Ok(BackupOutcome {
                    job: self.db(move |c| c.job(id)).await?,
                    failure: Some(error),
                    point: None,
                    warnings: warnings.into_vec(),
                });
            }
        };
        if let Some(vault) = opening.open_now() {
            self.vault_opened(&location, &vault, &mut taken.point, &mut warnings)
                .await?;
        }
        self.transfer(&run, opening, &mut taken, early, &mut warnings)
            .await?;
        let snapshot = taken.point;
        let ended = self.finish_job(&run.job, Some(&snapshot.id)).await?;
        job_lock.remove();
        Ok(BackupOutcome {
            job: ended,
            failure: None,
            point: Some(snapshot),
            warnings: warnings.into_vec(),
        })
    }

    /// The Snapshot subtask, holding the VM's snapshot lock until the subtask is recorded as
    /// ended (so the catalog never shows two Snapshots of one VM in progress at once). The
    /// early send it starts, if any, is left in `early`. On failure the job is failed, still
    /// under the lock, and the inner result is the error. The outer `Err` is for catalog
    /// failures only.
    async fn snapshot(
        &self,
        run: &Run<'_>,
        early: &mut Option<EarlySend>,
        warnings: &mut Warnings,
    ) -> Result<Result<Taken>> {
        let (job, spec) = (&run.job, run.spec);
        let held = self.lock_snapshots(&spec.vm, true).await;
        let taken = match held {
            Ok(_) => self.take_snapshot(run, early, warnings).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(taken) => {
                let stats = &taken.point.stats;
                self.finish_subtask(
                    job,
                    SubtaskKind::Snapshot,
                    SubtaskOutcome::completed(
                        stats.bytes_scanned,
                        stats.bytes_changed,
                        stats.bytes_stored,
                    ),
                )
                .await?;
                // Expiry after the subtask is on record (a cancelled sweep must not fail a job
                // whose point is committed), still under the lock.
                if let Err(e) = self
                    .expire_snapshots(&spec.vm, self.now(), Some(&taken.point.id))
                    .await
                {
                    warnings.push(format!(
                        "could not expire old snapshots of {}: {e}",
                        spec.vm
                    ));
                }
                Ok(Ok(taken))
            }
            Err(error) => {
                self.fail_job(job, &error.to_string()).await?;
                Ok(Err(error))
            }
        }
        // `held` is released here.
    }

    /// The work of the Snapshot subtask, with the VM's snapshot lock held by the caller: the
    /// point, and the chunks it wrote to the snapshot tier. Nothing here waits for the vault.
    ///
    /// The capture is decided before any hook (see `capture.rs`); the hooks then wrap only the
    /// clones when the disks are cloned, or the whole read when they are not.
    async fn take_snapshot(
        &self,
        run: &Run<'_>,
        early: &mut Option<EarlySend>,
        warnings: &mut Warnings,
    ) -> Result<Taken> {
        let (job, spec) = (&run.job, run.spec);
        let vm = &spec.vm;
        if !INSTANT_RESTORE_DAYS.contains(&spec.instant_restore_days) {
            return Err(crate::Error::InstantRestoreDays {
                days: spec.instant_restore_days,
                min: *INSTANT_RESTORE_DAYS.start(),
                max: *INSTANT_RESTORE_DAYS.end(),
            });
        }
        self.start_subtask(job, SubtaskKind::Snapshot).await?;

        let tier = self.open_tier(run, warnings).await?;
        // The parent is the VM's newest snapshot on this host (its lock is held, so it stays
        // the newest): the one point a change hint can be proven against.
        let parent = tier.latest_point(vm).await?;
        let prepared = {
            let (snapshots, vm, disks, mut mode) = (
                self.snapshots.clone(),
                vm.clone(),
                spec.disks.clone(),
                spec.capture,
            );
            if spec.qmp.is_some() {
                // QEMU fleecing fixes the instant: no clones to prepare.
                mode.mode = capture::CaptureMode::Read;
            }
            tokio::task::spawn_blocking(move || {
                let mut notes = Vec::new();
                capture::prepare(&snapshots, &vm, &disks, mode, &mut |w| notes.push(w))
                    .map(|prepared| (prepared, notes))
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
        };
        let (prepared, notes) = prepared?;
        warnings.extend(notes);
        // The point's id is chosen before the capture: the new dirty bitmaps (of qcow2 disks,
        // and of a running VM's disks) are named after it.
        let time = self.now();
        let id = blockvault_repo::new_point_id(vm, time);
        let fleecing = self
            .begin_fleecing(spec, &prepared.names, parent.as_ref(), &id)
            .await?;

        let mut freeze = hooks::Freeze::begin(&spec.hooks, vm, &spec.disks, warnings)
            .await
            .map_err(|message| crate::Error::Hook { message })?;
        // What is known of the vault now, without waiting for it: the vault the point is for
        // (the id last seen at its location while it is still opening; corrected once it
        // opens, see `vault_opened`), and the early send.
        let open_id = match &*run.seen.borrow() {
            Some(Ok(vault)) => Some(vault.config().id.clone()),
            _ => None,
        };
        let vault_id = match open_id {
            Some(id) => Some(id),
            None => {
                let location = run.location.to_owned();
                self.db(move |c| c.vault_id(&location)).await?
            }
        };
        *early = early_send(run.seen, spec, tier.codec());
        // The disks' stats around the capture: a disk nothing wrote to meanwhile is on record
        // as holding this point (see `disk_state`), so a later in-place rollback skips its
        // scan. Only when a pre-hook quiesced the VM: a write the kernel has stamped may
        // still be in flight (asynchronous direct I/O) while the disk is read.
        let read_at = Timestamp::now();
        let before: Vec<Option<FileStat>> =
            spec.disks.iter().map(|d| FileStat::of(d).ok()).collect();
        let mut captured = match fleecing {
            Some(begun) => {
                self.capture_fleeced(spec, begun, &mut freeze, warnings, prepared.names)
                    .await?
            }
            None => {
                self.capture(spec, parent.as_ref(), &id, prepared, &mut freeze, warnings)
                    .await?
            }
        };
        let request = BackupRequest {
            vm: vm.clone(),
            disks: captured.inputs.clone(),
            block_size: spec.block_size,
            consistency: if spec.hooks.quiesce() {
                Consistency::ApplicationConsistent
            } else {
                Consistency::CrashConsistent
            },
            capture: Some(captured.kind),
            options: spec.options,
            time: Some(time),
            retain_until: spec.retain_until,
            id: Some(id),
            vault: vault_id,
        };
        let parent = match parent {
            Some(point) => ParentChoice::Point(Box::new(point)),
            None => ParentChoice::Nothing,
        };
        let taken = tier
            .write(
                &request,
                &parent,
                Arc::new(Phase("snapshot", Arc::clone(run.progress))),
                early.as_ref(),
            )
            .await;
        // The disks are read: their qemu-nbd servers stop (and release the disks' locks).
        drop(request);
        captured.stop_servers();
        // The qcow2 disks' bitmaps are settled before the post-hook, so a VM its pre-hook
        // stopped still keeps its QEMU off them: the parent's go once the point is committed,
        // the new ones when it is not (the parent's still cover every write since the parent).
        if let Some(bitmaps) = captured.bitmaps.take() {
            warnings.extend(bitmaps.settle(taken.is_ok()).await);
        }
        // The VM is thawed whatever happened to the read (a no-op after clones).
        let window = freeze.end(warnings).await;
        drop(freeze);
        if let Some(fleeced) = captured.fleeced.take() {
            warnings.extend(fleeced.finish(taken.is_ok()).await);
        }
        let report = match taken {
            Ok(report) => report,
            Err(e) => {
                // Free what the failed snapshot wrote (a full disk must not stay full).
                if let Err(sweep) = self.snapshots.sweep(vm).await {
                    warnings.push(format!("could not clean the failed snapshot: {sweep}"));
                }
                return Err(e.into());
            }
        };
        warnings.extend(report.warnings.iter().cloned());
        let point = report.point;
        // The formats outlive the snapshots: a header is held to them once these expire.
        let formats = point.disks.iter().map(|d| (&d.name, d.format));
        self.snapshots.remember_formats(vm, formats);
        if let Some(staging) = captured.staging.take() {
            let (snapshots, vm, id) = (self.snapshots.clone(), vm.clone(), point.id.clone());
            let kept = tokio::task::spawn_blocking(move || snapshots.keep(&vm, staging, &id))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            if let Err(e) = kept {
                warnings.push(format!(
                    "could not keep the clones of point {} for instant restore: {e}",
                    point.id
                ));
            }
        }
        let mut record = capture_report::record(
            &captured,
            spec.hooks.quiesce().then_some(window),
            &report.scans,
        );
        warnings.extend(disk_size::note_resized(&mut record, &parent, &point));
        if captured.kind == Capture::ReadUnderHook && window > spec.capture.long_freeze {
            warnings.push(capture_report::long_freeze_warning(vm, window, &captured));
        }
        for disk in &record.disks {
            if let Some(missed) = disk.hint_missed.filter(|&n| n > 0) {
                warnings.push(format!(
                    "the changed extents of disk {} missed {missed} changed blocks, found by \
                     this point's full scan (the point holds the scan's map); please report it",
                    disk.disk
                ));
            }
        }
        let (id, stored) = (job.id, record.clone());
        self.db(move |c| c.record_capture(id, &stored)).await?;
        self.events.publish(
            job,
            JobEventKind::Captured {
                record: Box::new(record),
            },
        );
        // Cloned disks were stated right after their clones; read ones after the read.
        let after = captured
            .after
            .clone()
            .unwrap_or_else(|| spec.disks.iter().map(|d| FileStat::of(d).ok()).collect());
        let states = DiskStates::new(&self.state);
        for (((path, before), after), disk) in
            spec.disks.iter().zip(before).zip(&after).zip(&point.disks)
        {
            // A running VM's disk file says nothing of the point: QEMU writes it on.
            let quiesced = spec.hooks.quiesce() && spec.qmp.is_none();
            if let (true, Some(stat), Some(after)) = (quiesced, before, after)
                && stat == *after
                && stat.settled_at(read_at)
                && let Ok(canonical) = std::fs::canonicalize(path)
            {
                states.record(&DiskState {
                    boot: disk_state::boot_id(),
                    path: canonical,
                    stat,
                    taken: read_at,
                    vm: vm.clone(),
                    point: point.id.clone(),
                    disk: disk.name.clone(),
                    map_digest: disk.map_digest.clone(),
                });
            }
        }
        let expires =
            point.time + SignedDuration::from_hours(24 * i64::from(spec.instant_restore_days));
        let (summary, owned) = (PointSummary::from(&point), vm.clone());
        self.db(move |c| c.add_point_tier(&owned, &summary, Tier::Snapshot, Some(expires)))
            .await?;
        Ok(Taken {
            point,
            fresh: report.new_chunks,
        })
    }

    /// The vault of a job is open: this host remembers its id at `location`, and the job's
    /// snapshot point, if it names another vault (or none: the Snapshot did not know yet), is
    /// made to name this one. A failure to rewrite the record is a warning: the point is
    /// intact, only listings against this vault may miss it until it expires.
    async fn vault_opened(
        &self,
        location: &str,
        vault: &Vault,
        point: &mut RecoveryPoint,
        warnings: &mut Warnings,
    ) -> Result<()> {
        // The key the VM's tiers must hold, for the next Snapshot into this vault.
        self.snapshots.remember(location, vault.config());
        let id = &vault.config().id;
        let (at, seen, now) = (location.to_owned(), id.clone(), self.now());
        self.db(move |c| {
            if c.vault_id(&at)?.as_ref() != Some(&seen) {
                c.remember_vault(&at, &seen, now)?;
            }
            Ok(())
        })
        .await?;
        if point.vault.as_ref() == Some(id) {
            return Ok(());
        }
        let renamed = RecoveryPoint {
            vault: Some(id.clone()),
            ..point.clone()
        };
        match self.rewrite_snapshot_record(&renamed).await {
            Ok(()) => *point = renamed,
            Err(e) => warnings.push(format!(
                "could not record in snapshot point {} of {} that it is for vault {id}: {e}",
                point.id, point.vm
            )),
        }
        Ok(())
    }

    /// Replaces the snapshot tier's record of `point` (an atomic replace of one small file)
    /// if the record is still there. Only the job that made the point calls this, before it
    /// ends: expiry cannot have chosen so young a point.
    async fn rewrite_snapshot_record(&self, point: &RecoveryPoint) -> Result<()> {
        let Some(tier) = self.snapshots.open(&point.vm).await? else {
            return Ok(());
        };
        let store = tier.store();
        match store.get_point(&point.vm, &point.id).await {
            Ok(_) => {}
            Err(blockvault_store::Error::PointMissing { .. }) => return Ok(()),
            Err(e) => return Err(blockvault_vault::Error::from(e).into()),
        }
        store
            .put_point(point)
            .await
            .map_err(|e| blockvault_vault::Error::from(e).into())
    }

    /// The Transfer subtask. Its failure is recorded on the subtask (the job then completes
    /// with a warning), so only catalog errors come out as `Err`. The vault is not needed
    /// after it: `opening` ends here, then `early` (which may have waited for the vault).
    async fn transfer(
        &self,
        run: &Run<'_>,
        mut opening: Opening<'_>,
        taken: &mut Taken,
        mut early: Option<EarlySend>,
        warnings: &mut Warnings,
    ) -> Result<()> {
        let ran = self
            .run_transfer(run, &mut opening, taken, &mut early, warnings)
            .await;
        drop(opening);
        // Where the Transfer did not run (skipped, stopping, failed to start), the early send
        // ends here: its uploads stay for the next transfer, its lease goes.
        if let Some(early) = early {
            warnings.extend(early.abandon().await);
        }
        ran
    }

    /// The body of [`Engine::transfer`]; takes over the early send when it runs the vault's
    /// transfer.
    async fn run_transfer(
        &self,
        run: &Run<'_>,
        opening: &mut Opening<'_>,
        taken: &mut Taken,
        early: &mut Option<EarlySend>,
        warnings: &mut Warnings,
    ) -> Result<()> {
        let (job, spec) = (&run.job, run.spec);
        let vm = taken.point.vm.clone();
        let kind = SubtaskKind::Transfer;
        if let Some(reason) = &spec.skip_transfer {
            let outcome = SubtaskOutcome::skipped(reason.clone());
            return self.finish_subtask(job, kind, outcome).await;
        }
        if spec.stop.as_ref().is_some_and(|stop| *stop.borrow()) {
            let outcome = SubtaskOutcome::failed(format!(
                "blockvault was stopping, so the transfer did not start; the point is in the \
                 snapshot tier and the next transfer of {vm} carries its changes"
            ));
            return self.finish_subtask(job, kind, outcome).await;
        }
        let held = match Lock::try_acquire(&self.vm_lock(&vm, kind)) {
            Ok(held) => held,
            Err(e) => {
                let outcome = SubtaskOutcome::failed(e.to_string());
                return self.finish_subtask(job, kind, outcome).await;
            }
        };
        let Some(_held) = held else {
            let running = self
                .db(|c| c.unfinished_jobs())
                .await?
                .into_iter()
                .filter(|j| j.id != job.id && j.vm == vm)
                // The holder: its transfer started (it may have just ended; the job has not).
                .find(|j| {
                    j.subtask(kind)
                        .is_some_and(|s| s.status != crate::SubtaskStatus::Pending)
                })
                .map(|j| format!(" (job {})", j.id))
                .unwrap_or_default();
            let reason = format!(
                "an earlier transfer of {vm} is still running{running}; the next transfer \
                 carries this point's changes"
            );
            return self
                .finish_subtask(job, kind, SubtaskOutcome::skipped(reason))
                .await;
        };
        self.start_subtask(job, kind).await?;
        // The Transfer is where the job waits for its vault.
        let vault = opening.wait().await;
        if let Ok(vault) = &vault {
            self.vault_opened(run.location, vault, &mut taken.point, warnings)
                .await?;
        }
        let outcome = match (vault, self.snapshots.open(&vm).await) {
            (Err(unavailable), _) => Err(format!(
                "the vault {} is unavailable: {}",
                unavailable.location, unavailable.reason
            )),
            (Ok(vault), Ok(Some(tier))) if tier.codec() != vault.store().codec() => {
                Err(super::tier_key::mismatch(&vm, &tier, &vault))
            }
            (Ok(vault), Ok(Some(tier))) => {
                let request = TransferRequest {
                    source: &tier,
                    point: &taken.point,
                    fresh: &taken.fresh,
                    options: spec.options,
                    progress: Arc::new(Phase("transfer", Arc::clone(run.progress))),
                };
                let copied = match early.take() {
                    Some(early) => vault.transfer_early(&request, early.finish().await).await,
                    None => vault.transfer(&request).await,
                };
                copied.map_err(|e| e.to_string())
            }
            (Ok(_), Ok(None)) => Err(format!("the snapshot tier of {vm} is gone")),
            (Ok(_), Err(e)) => Err(e.to_string()),
        };
        let outcome = match outcome {
            Ok(report) => {
                warnings.extend(report.warnings);
                let (summary, vm) = (PointSummary::from(&report.point), vm.clone());
                self.db(move |c| c.add_point_tier(&vm, &summary, Tier::Vault, None))
                    .await?;
                let stats = &report.point.stats;
                // A transfer reads no disk: nothing scanned; changed is since the newest
                // vault point.
                SubtaskOutcome::completed(0, stats.bytes_changed, stats.bytes_stored)
            }
            Err(error) => SubtaskOutcome::failed(error),
        };
        self.finish_subtask(job, kind, outcome).await
    }
}
