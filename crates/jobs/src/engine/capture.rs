//! The capture of a Snapshot: how the instant of a VM's disks is fixed, before anything is read.
//!
//! ```text
//! reflink          count extents (warn of a long clone) -> pre-hook -> clone every disk into
//!                  the tier's staging directory, back to back -> post-hook -> read the clones
//! read-under-hook  pre-hook -> read every disk -> post-hook      (no reflinks here)
//! read-live        read every disk, no hook: not crash-consistent if the VM writes meanwhile
//! qemu-fleecing    (`--qmp`, a running VM) pre-hook -> one QMP transaction -> post-hook ->
//!                  read QEMU's NBD exports of that instant (see `fleece.rs`)
//! ```
//!
//! `--capture auto` (the default) clones where every disk and the snapshot tier share one file
//! system with reflinks, and reads under the hook elsewhere, recording why. `--capture reflink`
//! refuses to run without clones; `--capture read` never clones. The freeze window is the time
//! from the end of the pre-hook to the start of the post-hook.
//!
//! A disk in a QEMU format (the disk read, or its clone: read with the disk's own backing
//! chain) is read through a `qemu-nbd` started for it ([`QemuNbd`]): the guest's view, not
//! the file's bytes. The servers are kept
//! in [`Captured`] until the write session is over, then stopped. A qcow2 clone's changed file
//! extents are not the guest's: a qcow2 disk's changes come from QEMU dirty bitmaps instead
//! (see `bitmaps`): the new point's bitmap is added inside the freeze (right after the clones,
//! or before the read under the hook), and the parent's, when trusted, is the hint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use blockvault_capture::{FsKind, clone_file, extent_count, same_fs};
use blockvault_core::{Capture, DiskFormat, DiskName, PointId, RecoveryPoint, VmName};
use blockvault_qemu::QemuNbd;
use blockvault_repo::disk_name;
use blockvault_snapshot::{SnapshotTier, Staging};
use blockvault_source::ChangeHint;
use blockvault_vault::DiskInput;

use super::bitmaps::{self, NewBitmaps};
use super::disk_format::FormatCheck;
use super::disk_state::FileStat;
use super::hooks::Freeze;
use super::{BackupSpec, Engine};
use crate::events::Warnings;
use crate::{ChangesFrom, Error, Result};

/// How a backup may capture the disks (`--capture`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureMode {
    /// Reflink clones where the file systems allow, else a read under the hook.
    #[default]
    Auto,
    /// Reflink clones, or the job fails before any hook runs.
    Reflink,
    /// Always read the disks (under the hook when there is one).
    Read,
}

impl CaptureMode {
    pub fn key(self) -> &'static str {
        match self {
            CaptureMode::Auto => "auto",
            CaptureMode::Reflink => "reflink",
            CaptureMode::Read => "read",
        }
    }
}

impl FromStr for CaptureMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<CaptureMode, String> {
        match s {
            "auto" => Ok(CaptureMode::Auto),
            "reflink" => Ok(CaptureMode::Reflink),
            "read" => Ok(CaptureMode::Read),
            _ => Err(format!(
                "unknown capture {s:?} (expected auto, reflink or read)"
            )),
        }
    }
}

/// What a clone costs per extent of its source, measured on XFS here (2.1-2.4 s for an image
/// of 93k extents): for the stall a warning predicts.
const CLONE_COST_PER_EXTENT: Duration = Duration::from_micros(25);

/// How a backup captures its disks, and the thresholds of the capture's warnings and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    pub mode: CaptureMode,
    /// Extents of one VM's disks above which the expected stall of the clones is worth a
    /// warning before anything is frozen: 20,000 (about 0.5 s).
    pub extent_warning: u64,
    /// A read under the hook longer than this is a job warning that says how to get instant
    /// snapshots: 1 s.
    pub long_freeze: Duration,
    /// How often a point whose disks' changes came from the file system is checked by a full
    /// scan: a week.
    pub check_changes_every: Duration,
    /// The format of every disk, when said outright (`--disk-format`); `None` (auto): by the
    /// header, which may not change from the previous point's (see `disk_format.rs`).
    pub disk_format: Option<DiskFormat>,
}

impl Default for CaptureOptions {
    fn default() -> CaptureOptions {
        CaptureOptions {
            mode: CaptureMode::Auto,
            extent_warning: 20_000,
            long_freeze: Duration::from_secs(1),
            check_changes_every: Duration::from_secs(7 * 24 * 3600),
            disk_format: None,
        }
    }
}

/// The capture decided before the pre-hook.
pub(super) struct Prepared {
    /// Where the clones go, when the disks are to be cloned.
    pub(super) staging: Option<Staging>,
    /// Why the disks are read rather than cloned, when `--capture auto` could not clone.
    pub(super) no_clone: Option<String>,
    /// Each disk's extents, when counted (the disks to be cloned).
    pub(super) extents: Vec<Option<u64>>,
    /// Each disk's name, as the point will record it (and its clone is named).
    pub(super) names: Vec<DiskName>,
    /// The format each disk was last read in, kept beyond its snapshots (the tier's memo),
    /// by disk name: what a header is held to when the VM has no snapshot left.
    pub(super) formats_before: BTreeMap<String, DiskFormat>,
}

/// Decides how to capture `disks` of `vm` in `mode`, before any hook runs: whether every disk
/// can be cloned into the tier, and what the clones will cost. Warns, through `warn`, of a
/// clone expected to stall the VM's writes for long.
pub(super) fn prepare(
    tier: &SnapshotTier,
    vm: &VmName,
    disks: &[PathBuf],
    options: CaptureOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Prepared> {
    let mode = options.mode;
    // A disk the point could not name fails before any hook runs.
    let names = disks
        .iter()
        .map(|d| disk_name(d))
        .collect::<Result<Vec<DiskName>, _>>()
        .map_err(blockvault_vault::Error::from)?;
    let read = |why: Option<String>| Prepared {
        staging: None,
        no_clone: why,
        extents: vec![None; disks.len()],
        names: names.clone(),
        formats_before: tier.formats(vm),
    };
    if mode == CaptureMode::Read {
        return Ok(read(None));
    }
    let why_not = match clone_obstacle(tier, vm, disks) {
        Ok(None) => None,
        Ok(Some(why)) => Some(why),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = why_not {
        return match mode {
            CaptureMode::Reflink => Err(Error::ReflinkUnavailable {
                vm: vm.clone(),
                why,
            }),
            _ => Ok(read(Some(why))),
        };
    }
    let mut extents = Vec::with_capacity(disks.len());
    for disk in disks {
        extents.push(Some(extent_count(disk)?));
    }
    let total: u64 = extents.iter().flatten().sum();
    if total > options.extent_warning {
        let stall = CLONE_COST_PER_EXTENT * u32::try_from(total).unwrap_or(u32::MAX);
        let worst = disks
            .iter()
            .zip(&extents)
            .max_by_key(|(_, n)| n.unwrap_or(0))
            .map(|(d, n)| format!("{} ({} extents)", d.display(), n.unwrap_or(0)))
            .unwrap_or_default();
        warn(format!(
            "the disks of {vm} have {total} extents (most: {worst}): cloning them will stall \
             the VM's writes for about {:.1} s; defragment the image (xfs_fsr, or btrfs \
             filesystem defragment) to shorten it, or use --capture read to read the disks \
             under the hook instead",
            stall.as_secs_f64()
        ));
    }
    Ok(Prepared {
        staging: Some(tier.stage(vm)?),
        no_clone: None,
        extents,
        names,
        formats_before: tier.formats(vm),
    })
}

/// Why the disks of `vm` cannot be cloned into the tier, or `None` when they can be tried (a
/// file system that has reflinks switched off still fails the clone itself).
pub(super) fn clone_obstacle(
    tier: &SnapshotTier,
    vm: &VmName,
    disks: &[PathBuf],
) -> Result<Option<String>> {
    let tier_dir = tier.dir(vm);
    std::fs::create_dir_all(&tier_dir).map_err(|e| Error::Io {
        path: tier_dir.clone(),
        source: e,
    })?;
    let kind = FsKind::of(&tier_dir)?;
    if !kind.may_reflink() {
        return Ok(Some(format!(
            "the snapshot tier {} is on {kind}, which has no reflinks",
            tier_dir.display()
        )));
    }
    for disk in disks {
        if let Some(why) = super::disk_format::clone_obstacle(disk) {
            return Ok(Some(why));
        }
        if !same_fs(disk, &tier_dir)? {
            return Ok(Some(format!(
                "disk {} is not on the snapshot tier's file system ({})",
                disk.display(),
                tier_dir.display()
            )));
        }
    }
    Ok(None)
}

/// The clones of `disks`, made back to back into `staging` (inside the freeze), named `names`
/// (as the point names the disks), and how long they took. On failure the clones made so far
/// stay in `staging` (removed with it).
pub(super) fn clone_all(
    staging: &Staging,
    disks: &[PathBuf],
    names: &[DiskName],
) -> Result<(Vec<PathBuf>, Duration)> {
    let started = Instant::now();
    let mut clones = Vec::with_capacity(disks.len());
    for (disk, name) in disks.iter().zip(names) {
        let clone = staging.path(name);
        clone_file(disk, &clone)?;
        clones.push(clone);
    }
    Ok((clones, started.elapsed()))
}

/// The write session's input for a disk read from its clone.
pub(super) fn from_clone(disk: &Path, clone: &Path) -> Result<DiskInput> {
    let source = blockvault_source::RawFile::open(clone).map_err(source_error)?;
    Ok(DiskInput {
        capture: Some(Arc::new(source)),
        ..DiskInput::file(disk)
    })
}

fn source_error(e: blockvault_source::Error) -> Error {
    blockvault_repo::Error::from(e).into()
}

/// The capture, made: what the write session reads, and what the job records of it.
pub(super) struct Captured {
    pub(super) kind: Capture,
    pub(super) inputs: Vec<DiskInput>,
    /// The clones, to keep as the point's once it is committed.
    pub(super) staging: Option<Staging>,
    /// Why the disks were read rather than cloned, when clones were possible to ask for.
    pub(super) no_clone: Option<String>,
    pub(super) extents: Vec<Option<u64>>,
    pub(super) names: Vec<DiskName>,
    /// The disks' stats right after their clones (`None` when read: stated after the read).
    pub(super) after: Option<Vec<Option<FileStat>>>,
    /// How long the clones took, all disks.
    pub(super) clone_time: Option<Duration>,
    /// Per disk: why it had no change hint, when it was not for want of a parent scan.
    pub(super) reasons: Vec<Option<String>>,
    /// Per disk: where its change hint came from, when it has one.
    pub(super) hint_from: Vec<ChangesFrom>,
    /// The `qemu-nbd` servers the inputs read qcow2 disks through: declared after `inputs`,
    /// kept until the write session is over, stopped when this is dropped.
    pub(super) servers: Vec<Arc<QemuNbd>>,
    /// A running VM's fleecing (`--qmp`), finished once the point is committed or not.
    pub(super) fleeced: Option<super::fleece::Fleeced>,
    /// The new point's dirty bitmaps on the qcow2 disks: committed or abandoned by the
    /// Snapshot once the servers are stopped; declared after them (dropped uncommitted, they
    /// are removed).
    pub(super) bitmaps: Option<NewBitmaps>,
}

impl Captured {
    /// Stops the `qemu-nbd` servers (the inputs are dropped too: they hold them). The
    /// disks' bitmaps can be changed after this: a server holds its disk's lock.
    pub(super) fn stop_servers(&mut self) {
        self.inputs.clear();
        self.servers.clear();
    }
}

impl Engine {
    /// Captures `spec`'s disks inside `freeze` as `prepared` decided: clones them (and ends the
    /// freeze), or leaves them to be read under it. Under `--capture auto`, a file system that
    /// refuses the clone (reflinks switched off) falls back to the read, saying why. Each
    /// qcow2 disk gets the dirty bitmap of `point` (the point this Snapshot makes), removed
    /// again when the capture fails.
    pub(super) async fn capture(
        &self,
        spec: &BackupSpec,
        parent: Option<&RecoveryPoint>,
        point: &PointId,
        prepared: Prepared,
        freeze: &mut Freeze<'_>,
        warnings: &mut Warnings,
    ) -> Result<Captured> {
        let mut bitmaps = NewBitmaps::new(point.clone(), parent.map(|p| p.id.clone()));
        let captured = self
            .capture_disks(spec, parent, prepared, &mut bitmaps, freeze, warnings)
            .await;
        match captured {
            Ok(mut captured) => {
                captured.bitmaps = Some(bitmaps);
                Ok(captured)
            }
            Err(e) => {
                // The servers of the failed capture are stopped by now.
                warnings.extend(bitmaps.settle(false).await);
                Err(e)
            }
        }
    }

    async fn capture_disks(
        &self,
        spec: &BackupSpec,
        parent: Option<&RecoveryPoint>,
        prepared: Prepared,
        bitmaps: &mut NewBitmaps,
        freeze: &mut Freeze<'_>,
        warnings: &mut Warnings,
    ) -> Result<Captured> {
        let Prepared {
            staging,
            mut no_clone,
            extents,
            names,
            formats_before,
        } = prepared;
        let mut captured = Captured {
            kind: if spec.hooks.quiesce() {
                Capture::ReadUnderHook
            } else {
                Capture::ReadLive
            },
            inputs: spec.disks.iter().map(DiskInput::file).collect(),
            staging: None,
            no_clone: None,
            extents: vec![None; spec.disks.len()],
            names,
            after: None,
            clone_time: None,
            reasons: vec![None; spec.disks.len()],
            hint_from: vec![ChangesFrom::FileSystem; spec.disks.len()],
            servers: Vec::new(),
            fleeced: None,
            bitmaps: None,
        };
        if let Some(staging) = staging {
            let (disks, names) = (spec.disks.clone(), captured.names.clone());
            let cloned = tokio::task::spawn_blocking(move || {
                let cloned = clone_all(&staging, &disks, &names);
                (staging, cloned)
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            match cloned {
                (staging, Ok((clones, took))) => {
                    captured.clone_time = Some(took);
                    // Still frozen: the qcow2 disks get the new point's bitmap, so every
                    // write after the clones is in it. The clones carry the parent's.
                    let mut formats = Vec::with_capacity(clones.len());
                    for (i, (disk, clone)) in spec.disks.iter().zip(&clones).enumerate() {
                        let check =
                            format_check(spec, parent, &formats_before, &captured.names[i], i);
                        let format = match bitmaps::qemu_format(clone, check).await {
                            Ok(format) => format,
                            Err(e) => {
                                freeze.end(warnings).await;
                                return Err(e);
                            }
                        };
                        if let Some(format) = format {
                            match bitmaps.add(disk, format).await {
                                Ok((notes, _)) => warnings.extend(notes),
                                Err(e) => warnings.push(bitmaps.not_added(disk, &e)),
                            }
                        }
                        formats.push(format);
                    }
                    freeze.end(warnings).await;
                    captured.after =
                        Some(spec.disks.iter().map(|d| FileStat::of(d).ok()).collect());
                    // File system hints for the raw clones; a qcow2 clone's changed file
                    // extents are not the guest's.
                    let (raw_names, raw_clones): (Vec<DiskName>, Vec<PathBuf>) = captured
                        .names
                        .iter()
                        .zip(&clones)
                        .zip(&formats)
                        .filter(|(_, f)| f.is_none())
                        .map(|((n, c), _)| (n.clone(), c.clone()))
                        .unzip();
                    let hints = self
                        .change_hints(spec, parent, &raw_names, &raw_clones)
                        .await?;
                    let mut raw_hints = hints.hints.into_iter().zip(hints.reasons);
                    let mut inputs = Vec::with_capacity(clones.len());
                    for (i, (disk, clone)) in spec.disks.iter().zip(&clones).enumerate() {
                        if let Some(format) = formats[i] {
                            let name = &captured.names[i];
                            let served =
                                bitmaps::serve(clone, disk, format, name, parent, None).await?;
                            captured.reasons[i] = served.reason;
                            captured.hint_from[i] = ChangesFrom::DirtyBitmap;
                            captured.servers.push(Arc::clone(&served.server));
                            inputs.push(DiskInput {
                                capture: Some(served.server as _),
                                hint: served.hint,
                                format,
                                ..DiskInput::file(disk)
                            });
                        } else {
                            let (hint, reason) =
                                raw_hints.next().unwrap_or((ChangeHint::Everything, None));
                            captured.reasons[i] = reason;
                            inputs.push(DiskInput {
                                hint,
                                check_hint: hints.check,
                                ..from_clone(disk, clone)?
                            });
                        }
                    }
                    captured.inputs = inputs;
                    captured.kind = Capture::Reflink;
                    captured.staging = Some(staging);
                    captured.extents = extents;
                }
                (_, Err(Error::Capture(e)))
                    if e.is_unsupported() && spec.capture.mode == CaptureMode::Auto =>
                {
                    no_clone = Some(e.to_string());
                }
                (_, Err(e)) => {
                    freeze.end(warnings).await;
                    return Err(e);
                }
            }
        }
        if captured.kind != Capture::Reflink {
            for (i, disk) in spec.disks.iter().enumerate() {
                let check = format_check(spec, parent, &formats_before, &captured.names[i], i);
                let format = match bitmaps::qemu_format(disk, check).await {
                    Ok(format) => format,
                    Err(e) => {
                        freeze.end(warnings).await;
                        return Err(e);
                    }
                };
                let Some(format) = format else {
                    if let Some(why) = &no_clone {
                        let reason = format!("the disks were read, not cloned: {why}");
                        captured.reasons[i] = Some(reason);
                    }
                    continue;
                };
                // Before qemu-nbd opens it (and holds its lock), inside the freeze.
                let info = match bitmaps.add(disk, format).await {
                    Ok((notes, info)) => {
                        warnings.extend(notes);
                        info
                    }
                    Err(e @ blockvault_qemu::Error::ImageLocked { .. }) => {
                        freeze.end(warnings).await;
                        return Err(e.into());
                    }
                    Err(e) => {
                        warnings.push(bitmaps.not_added(disk, &e));
                        None
                    }
                };
                let name = &captured.names[i];
                let served = match bitmaps::serve(disk, disk, format, name, parent, info).await {
                    Ok(served) => served,
                    Err(e) => {
                        freeze.end(warnings).await;
                        return Err(e);
                    }
                };
                let input = &mut captured.inputs[i];
                input.capture = Some(Arc::clone(&served.server) as _);
                input.format = format;
                input.hint = served.hint;
                captured.reasons[i] = served.reason;
                captured.hint_from[i] = ChangesFrom::DirtyBitmap;
                captured.servers.push(served.server);
            }
        }
        // The periodic full scan checks bitmap hints as it checks the file system's.
        let bitmap_hinted = |(input, from): (&DiskInput, &ChangesFrom)| {
            *from == ChangesFrom::DirtyBitmap && matches!(input.hint, ChangeHint::Dirty(_))
        };
        if captured
            .inputs
            .iter()
            .zip(&captured.hint_from)
            .any(bitmap_hinted)
            && self.check_due(spec).await?
        {
            for (input, from) in captured.inputs.iter_mut().zip(&captured.hint_from) {
                if *from == ChangesFrom::DirtyBitmap {
                    input.check_hint = true;
                }
            }
        }
        captured.no_clone = no_clone;
        Ok(captured)
    }
}

/// What decides the format of disk `i` of `spec`, named `name` (see `disk_format.rs`).
fn format_check(
    spec: &BackupSpec,
    parent: Option<&RecoveryPoint>,
    remembered: &BTreeMap<String, DiskFormat>,
    name: &DiskName,
    i: usize,
) -> FormatCheck {
    let disk = spec.disks.get(i).map_or_else(PathBuf::new, PathBuf::clone);
    let remembered = remembered.get(name.as_str()).copied();
    FormatCheck::new(spec.capture.disk_format, parent, remembered, name, &disk)
}
