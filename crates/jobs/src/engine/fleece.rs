//! The Snapshot of a running VM through its QEMU monitor (`--qmp SOCKET`): QEMU fleecing
//! ([`Fleecing`]) fixes every disk at one instant, and the disks are read over NBD at that
//! instant while the guest runs on.
//!
//! ```text
//! before the hooks  connect to the monitor, remove a killed run's leftovers, find each disk's
//!                   node, trust its bitmap against the parent point, scratch nodes in the
//!                   tier's staging directory; the point's id is chosen here
//! pre-hook -> the one QMP transaction -> post-hook      (the freeze window: milliseconds)
//! read              the NBD exports; with the parent's bitmap trusted, only its dirty
//!                   extents (ChangesFrom::DirtyBitmap), else every block, saying why
//! after the write   finish(committed): the parent's bitmap removed once the point is
//!                   recorded; on failure the new bitmap merged back into the parent's
//! ```
//!
//! The parent is the VM's newest snapshot on this host, as for reflink clones: a bitmap is
//! trusted only when it is named after that point, recording, consistent, and the disk kept
//! its size. A qcow2 disk stores its bitmaps; a raw one's live in QEMU's memory, so a QEMU
//! restart costs that disk one full scan. A qcow2 disk records its format on the point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blockvault_core::{Capture, DiskFormat, DiskName, PointId, RecoveryPoint};
use blockvault_qemu::{
    BitmapHome, DiskCheck, Distrust, FleeceDisk, Fleecing, FleecingOptions, Qmp,
};
use blockvault_repo::disk_name;
use blockvault_snapshot::Staging;
use blockvault_source::{ChangeHint, NbdOptions};
use blockvault_vault::DiskInput;

use super::capture::Captured;
use super::hooks::Freeze;
use super::{BackupSpec, Engine};
use crate::events::Warnings;
use crate::{ChangesFrom, Error, Result};

/// How long the monitor may take to answer.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// A fleecing begun before the hooks: what the transaction fixes, and where its scratch
/// images live.
pub(super) struct Begun {
    fleecing: Fleecing,
    /// The tier's staging directory holding the scratch images' directory; removed when
    /// dropped, after the fleecing is finished.
    staging: Staging,
}

/// A fleecing whose disks are being read: finished with [`Fleeced::finish`] once the point is
/// committed (or not).
pub(super) struct Fleeced {
    fleecing: Option<Fleecing>,
    staging: Option<Staging>,
}

impl Fleeced {
    /// Tears the fleecing down; `committed`: the point named after it is recorded. A
    /// failure is a warning: the point (if any) is intact, and the next backup removes what
    /// is left.
    /// With `committed`, first checks that the fleecing jobs ran to the end of the reads: a
    /// job another client of the monitor cancelled stopped keeping the instant, which is a
    /// warning that the point may hold later writes.
    pub(super) async fn finish(mut self, committed: bool) -> Vec<String> {
        let Some(mut fleecing) = self.fleecing.take() else {
            return Vec::new();
        };
        let staging = self.staging.take();
        tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            if committed && !fleecing.intact().unwrap_or(false) {
                warnings.push(format!(
                    "the QEMU fleecing job ended before the disks were read in full (cancelled \
                     by another client of the VM's monitor?): point {} may hold writes made \
                     after its instant",
                    fleecing.point()
                ));
            }
            if let Err(e) = fleecing.finish(committed) {
                warnings.push(format!("could not tear down the QEMU fleecing: {e}"));
            }
            drop(staging);
            warnings
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }
}

/// What a disk's check says of the changed-block tracking it gets, for `protect`.
pub fn describe(check: &DiskCheck) -> String {
    let node = &check.node;
    let cbt = match &check.changes {
        None => "changed-block tracking from QEMU dirty bitmaps from the next backup on".to_owned(),
        Some(Ok(name)) => format!("changed-block tracking from its dirty bitmap {name}"),
        Some(Err(why)) => format!("a full scan next time ({why}), then dirty bitmaps"),
    };
    let cbt = match check.bitmap_home() {
        BitmapHome::Image => cbt,
        BitmapHome::Memory => format!(
            "{cbt}, kept in QEMU's memory (this {} disk cannot store them: every QEMU restart \
             costs one full scan)",
            node.driver
        ),
        BitmapHome::None => "no changed-block tracking: a block device may be written by \
                             others than this QEMU, which its bitmaps would not see (every \
                             backup reads every allocated block)"
            .to_owned(),
    };
    format!(
        "{}: node {} ({}, {} bytes), fleeced at one instant; {cbt}",
        check.path.display(),
        node.name,
        node.driver,
        node.size
    )
}

/// Checks each of `disks` of the running VM behind `qmp` as a backup will read it: the
/// monitor answers, each disk's node is found, its bitmap is trusted against `parent` (the
/// VM's newest snapshot, which the next backup follows). One line per disk (see
/// [`describe`]).
pub fn check_disks(
    qmp: &Path,
    disks: &[PathBuf],
    parent: Option<&RecoveryPoint>,
) -> Result<Vec<String>> {
    let mut monitor = Qmp::connect(qmp, QMP_TIMEOUT)?;
    let mut lines = Vec::with_capacity(disks.len());
    for disk in disks {
        let size = |p: &RecoveryPoint| {
            let name = disk_name(disk).ok()?;
            p.disks.iter().find(|d| d.name == name).map(|d| d.size)
        };
        let against = parent.and_then(|p| Some((&p.id, size(p)?)));
        lines.push(describe(&DiskCheck::of(&mut monitor, disk, against)?));
    }
    Ok(lines)
}

impl Engine {
    /// Begins fleecing `spec`'s disks (named `names`) when `spec` names a QEMU monitor,
    /// before any hook runs: the point's id is chosen now, so the new bitmaps are named after
    /// it. `None` without a monitor.
    pub(super) async fn begin_fleecing(
        &self,
        spec: &BackupSpec,
        names: &[DiskName],
        parent: Option<&RecoveryPoint>,
        point: &PointId,
    ) -> Result<Option<Begun>> {
        let Some(qmp) = spec.qmp.clone() else {
            return Ok(None);
        };
        let (vm, point) = (spec.vm.clone(), point.clone());
        let disks: Vec<FleeceDisk> = spec
            .disks
            .iter()
            .zip(names)
            .map(|(path, name)| FleeceDisk {
                path: path.clone(),
                parent_size: parent
                    .and_then(|p| p.disks.iter().find(|d| &d.name == name))
                    .map(|d| d.size),
            })
            .collect();
        let (tier, parent) = (self.snapshots.clone(), parent.map(|p| p.id.clone()));
        tokio::task::spawn_blocking(move || {
            let monitor = Qmp::connect(&qmp, QMP_TIMEOUT)?;
            let staging = tier.stage(&vm)?;
            let options = FleecingOptions {
                timeout: QMP_TIMEOUT,
                ..FleecingOptions::new(staging.dir())
            };
            let fleecing = Fleecing::start(monitor, &disks, parent.as_ref(), &point, &options)?;
            Ok(Some(Begun { fleecing, staging }))
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// Fixes the disks of `begun` inside `freeze` (the transaction, then the post-hook), and
    /// exports them: the write session's inputs, one per disk of `spec`, and why each disk
    /// that is scanned in full is.
    pub(super) async fn capture_fleeced(
        &self,
        spec: &BackupSpec,
        begun: Begun,
        freeze: &mut Freeze<'_>,
        warnings: &mut Warnings,
        names: Vec<DiskName>,
    ) -> Result<Captured> {
        let Begun {
            mut fleecing,
            staging,
            ..
        } = begun;
        if let Some(warning) = scratch_space_warning(&fleecing, staging.dir()) {
            warnings.push(warning);
        }
        let (fleecing, fixed) = tokio::task::spawn_blocking(move || {
            let fixed = fleecing.fix();
            (fleecing, fixed)
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        freeze.end(warnings).await;
        let mut fleeced = Fleeced {
            fleecing: Some(fleecing),
            staging: Some(staging),
        };
        let exported = match fixed {
            Ok(()) => self.export(&mut fleeced).await,
            Err(e) => Err(e.into()),
        };
        let (inputs, reasons) = match exported {
            Ok(exported) => exported,
            Err(e) => {
                warnings.extend(fleeced.finish(false).await);
                return Err(e);
            }
        };
        let hinted = inputs
            .iter()
            .any(|i: &DiskInput| matches!(i.hint, ChangeHint::Dirty(_)));
        let check = hinted && self.check_due(spec).await?;
        let inputs: Vec<DiskInput> = inputs
            .into_iter()
            .map(|input| DiskInput {
                check_hint: check,
                ..input
            })
            .collect();
        let disks = names.len();
        Ok(Captured {
            kind: Capture::QemuFleecing,
            inputs,
            staging: None,
            no_clone: None,
            extents: vec![None; names.len()],
            names,
            after: None,
            clone_time: None,
            reasons,
            servers: Vec::new(),
            fleeced: Some(fleeced),
            hint_from: vec![ChangesFrom::DirtyBitmap; disks],
            bitmaps: None,
        })
    }

    async fn export(&self, fleeced: &mut Fleeced) -> Result<(Vec<DiskInput>, Vec<Option<String>>)> {
        let Some(mut fleecing) = fleeced.fleecing.take() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (fleecing, exported) = tokio::task::spawn_blocking(move || {
            let exported = fleecing
                .export(&NbdOptions::default())
                .map_err(Error::from)
                .and_then(|sources| inputs(&fleecing, sources));
            (fleecing, exported)
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        fleeced.fleecing = Some(fleecing);
        exported
    }
}

/// Each fleeced disk as the write session's input: its export, and its dirty extents when
/// the parent's bitmap is trusted.
fn inputs(
    fleecing: &Fleecing,
    sources: Vec<blockvault_source::NbdSource>,
) -> Result<(Vec<DiskInput>, Vec<Option<String>>)> {
    let mut inputs = Vec::with_capacity(sources.len());
    let mut reasons = Vec::with_capacity(sources.len());
    for (disk, source) in fleecing.disks().iter().zip(sources) {
        let (hint, reason) = match &disk.check.changes {
            Some(Ok(_)) => {
                let dirty = source
                    .dirty_extents()
                    .map_err(|e| Error::from(blockvault_qemu::Error::from(e)))?;
                (ChangeHint::Dirty(dirty), None)
            }
            Some(Err(Distrust::Missing { name }))
                if disk.check.bitmap_home() == BitmapHome::Memory =>
            {
                (
                    ChangeHint::Everything,
                    Some(format!(
                        "the disk has no dirty bitmap {name}: this {} disk keeps it in QEMU's \
                         memory only, so a QEMU restart since the parent point loses it",
                        disk.check.node.driver
                    )),
                )
            }
            Some(Err(why)) => (ChangeHint::Everything, Some(why.to_string())),
            None => (
                ChangeHint::Everything,
                Some("no earlier snapshot of this VM on this host to compare with".to_owned()),
            ),
        };
        inputs.push(DiskInput {
            capture: Some(Arc::new(source)),
            hint,
            check_hint: false,
            // The format QEMU opened the disk in (its node's driver), raw if blockvault does
            // not know it: a restore writes that by default.
            format: disk.check.node.driver.parse().unwrap_or(DiskFormat::Raw),
            ..DiskInput::file(&disk.check.path)
        });
        reasons.push(reason);
    }
    Ok((inputs, reasons))
}

/// A warning when the file system of the scratch images (the snapshot tier's) has less room
/// than the disks' size: the fleecing job copies each block the guest overwrites during the
/// read there first. A copy that cannot be written fails the backup on QEMU 10.1+ and, on
/// older QEMUs (copy-before-write's default under `blockdev-backup`), the guest's write.
fn scratch_space_warning(fleecing: &Fleecing, scratch: &Path) -> Option<String> {
    let stat = rustix::fs::statvfs(scratch).ok()?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let disks: u64 = fleecing.disks().iter().map(|d| d.check.node.size).sum();
    let then = if fleecing.guest_writes_safe() {
        "this backup fails (the guest's writes are not affected)"
    } else {
        "QEMU fails the guest's writes (QEMU before 10.1 cannot fail the backup instead)"
    };
    (free < disks).then(|| {
        format!(
            "the snapshot tier's file system ({}) has {} free for the fleecing's copies, less \
             than the disks' {}: if the guest overwrites more than that while its disks are \
             read, {then}; give the tier more room",
            scratch.display(),
            blockvault_core::bytes(free),
            blockvault_core::bytes(disks)
        )
    })
}
