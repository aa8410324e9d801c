//! `Verify` jobs: re-read and re-hash the chunks of a VM's points (or of the whole vault) and
//! record, per VM, whether its points are intact. Bad chunks are marked damaged in the vault,
//! so the next backup of the same data repairs them.

use std::sync::Arc;

use blockvault_core::{RecoveryPoint, VmName};
use blockvault_store::{DamagedPoint, PointListing};
use blockvault_vault::{ChunkShare, PointSelector, Progress, TransferOptions, Vault, VerifyReport};

use super::Engine;
use crate::{Job, Operation, Result};

/// What to verify.
#[derive(Clone, Debug)]
pub enum VerifyScope {
    /// One VM: every point, or the one a selector names.
    Vm {
        vm: VmName,
        point: Option<PointSelector>,
    },
    /// Every point of every VM in the vault.
    All,
}

/// How a verification ended: one `Verify` job per VM verified (Failed when a bad chunk or map
/// touches that VM), and the report of the whole run.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub jobs: Vec<Job>,
    pub report: VerifyReport,
}

impl Engine {
    /// Verifies the vault points `scope` names (see [`Vault::verify`]): each distinct chunk is
    /// read once however many points name it. Errors are for a verification that could not
    /// run (an unknown VM or point, the vault unreachable); damage is in the report and fails
    /// the jobs of the VMs it touches.
    pub async fn verify(
        &self,
        vault: &Vault,
        scope: &VerifyScope,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyOutcome> {
        self.verify_share(vault, scope, ChunkShare::ALL, options, progress)
            .await
    }

    /// [`Engine::verify`] reading only the chunks in `share` (every map of the points is still
    /// checked): one day of the daemon's rolling verification. Recorded as the same `Verify`
    /// jobs, and damage is marked the same way; a failed job's error names the share.
    pub async fn verify_share(
        &self,
        vault: &Vault,
        scope: &VerifyScope,
        share: ChunkShare,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyOutcome> {
        let mut points: Vec<RecoveryPoint> = Vec::new();
        let mut damaged: Vec<DamagedPoint> = Vec::new();
        let mut add = |listing: PointListing| {
            points.extend(listing.points);
            damaged.extend(listing.damaged);
        };
        match scope {
            VerifyScope::Vm { vm, point: None } => add(vault.points(vm).await?),
            VerifyScope::Vm {
                vm,
                point: Some(selector),
            } => points.push(vault.resolve(vm, selector).await?),
            VerifyScope::All => {
                for vm in vault.vms().await? {
                    add(vault.points(&vm).await?);
                }
            }
        }
        let vms: std::collections::BTreeSet<VmName> = points
            .iter()
            .map(|p| p.vm.clone())
            .chain(damaged.iter().map(|d| d.vm.clone()))
            .collect();
        let mut started = Vec::new();
        for vm in &vms {
            started.push((
                vm.clone(),
                self.begin_job(vm, Operation::Verify, &[]).await?,
            ));
        }
        // One run for every job: each job's progress is the run's.
        let progress = self.progress(
            started.iter().map(|(_, (job, _))| job.clone()).collect(),
            progress,
        );
        let verified = vault
            .verify_share(&points, share, options, progress)
            .await
            .map(|mut report| {
                report.bad_records = damaged;
                report
            });
        let mut jobs = Vec::new();
        for (vm, (job, lock)) in started {
            let ended = match &verified {
                Err(e) => self.fail_job(&job, &e.to_string()).await,
                Ok(report) => {
                    let bad_chunks = report
                        .bad_chunks
                        .iter()
                        .filter(|b| b.affects.iter().any(|a| a.vm == vm))
                        .count();
                    let bad_maps = report.bad_maps.iter().filter(|m| m.vm == vm).count();
                    let bad_records = report.bad_records.iter().filter(|r| r.vm == vm).count();
                    if bad_chunks + bad_maps + bad_records == 0 {
                        self.finish_job(&job, None).await.map(|_| ())
                    } else {
                        let mut error = format!(
                            "{bad_chunks} bad chunk(s), {bad_maps} bad block map(s) and \
                             {bad_records} unreadable point record(s) damage points of {vm} \
                             (see `blockvault verify` for the offsets)"
                        );
                        if !share.is_all() {
                            error.push_str(&format!(
                                "; found by the rolling verify reading {share} of the chunks"
                            ));
                        }
                        self.fail_job(&job, &error).await
                    }
                }
            };
            ended?;
            lock.remove();
            let id = job.id;
            jobs.push(self.db(move |c| c.job(id)).await?);
        }
        let report = verified?;
        self.mark_damaged(vault, &report).await?;
        Ok(VerifyOutcome { jobs, report })
    }

    /// Hands the bad chunks of `report` to the next backups: marked damaged in the vault (so
    /// no writer on any host takes them as present) and dropped from this host's chunk index.
    /// The next backup that reads the same data uploads them again and clears the marks.
    async fn mark_damaged(&self, vault: &Vault, report: &VerifyReport) -> Result<()> {
        if report.bad_chunks.is_empty() {
            return Ok(());
        }
        for bad in &report.bad_chunks {
            vault.store().mark_damaged(&bad.id).await?;
        }
        vault
            .drop_from_index(report.bad_chunks.iter().map(|b| b.id))
            .await?;
        Ok(())
    }
}
