//! Instant restore: a snapshot-tier point whose disks have kept clones (see the snapshot
//! crate's `clones.rs`) is restored by cloning them back, in milliseconds whatever the disk's
//! size, instead of reading the tier's chunks.
//!
//! ```text
//! new files: clone -> hidden partial file (FICLONE) -> fsync -> all renamed into place
//! in place:  set the disk to the clone's size -> FIEMAP of both -> the ranges whose physical
//!            place differs -> FICLONERANGE each (block aligned) -> fdatasync
//! ```
//!
//! A disk rolled back to a clone of itself shares most of its extents with it: only what the
//! VM wrote since is cloned back. A clone is the point's bytes by construction (the point was
//! read from it, and nothing writes to a kept clone). Into new files, nothing is renamed into
//! place before every disk is cloned and synced. In place, a rollback killed midway leaves
//! the disk part old, part restored, as any in-place restore does; running it again finishes
//! it (what is already the clone's is not cloned again).
//!
//! Whatever keeps a disk from its clone (no kept clone, a target on another file system, a
//! file system that refuses, an error) leaves that disk to the restore from the chunks, the
//! path every restore took before: into new files the point is then restored from the chunks
//! as a whole (nothing cloned is left behind); in place, the disks rolled back by clone are
//! handed to it as known content, so it neither scans nor writes them. A target the restore
//! from the chunks would refuse (it exists, is missing, is not a file) is left to it, so its
//! errors are the same whichever way a disk would have gone.
//!
//! A disk read from a qcow2 image has a qcow2 file as its kept clone: it stands for the point
//! only where the restore writes qcow2 (then the clone is the guest's disk exactly as it was,
//! its dirty bitmaps included), and only when it holds the whole disk by itself (no backing
//! file, no external data file) at the point's size. A raw clone may be cloned for a disk to
//! be written as qcow2: the caller converts it (see `restore_format.rs`); [`DiskRestore::format`]
//! says what each file holds.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use blockvault_capture::{clone_file, same_fs};
use blockvault_core::{DiskFormat, DiskName, DiskRecord, RecoveryPoint};
use blockvault_qemu::Qcow2Header;
use blockvault_snapshot::SnapshotTier;
use blockvault_vault::{RestoreRequest, RestoredDisk};

use super::rollback::rollback;

/// How one disk was restored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiskRestore {
    pub name: DiskName,
    pub method: RestoreMethod,
    /// In place by clone: the ranges of the disk that differed from the clone and were cloned
    /// back, and their bytes (the rest already shared the clone's extents). Into a new file by
    /// clone: one range, the whole disk.
    pub ranges_cloned: u64,
    pub bytes_cloned: u64,
    /// The format of the file written for the disk.
    pub format: DiskFormat,
}

/// Where a disk's restored content came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreMethod {
    /// Cloned back from the snapshot tier's kept clone (reflink): nothing read.
    Clone,
    /// Read from a tier's chunks, decoded and verified.
    Chunks,
}

impl std::fmt::Display for RestoreMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestoreMethod::Clone => "clone",
            RestoreMethod::Chunks => "chunks",
        })
    }
}

/// What cloning back did: the disks restored by clone, in the point's disk order (`None`: left
/// to the restore from the chunks), and why some were not, for the job's warnings.
#[derive(Debug, Default)]
pub(super) struct Cloned {
    pub(super) disks: Vec<Option<(RestoredDisk, DiskRestore)>>,
    pub(super) warnings: Vec<String>,
}

impl Cloned {
    /// Every disk was restored by clone.
    pub(super) fn complete(&self) -> bool {
        self.disks.iter().all(Option::is_some)
    }

    fn nothing(point: &RecoveryPoint, warnings: Vec<String>) -> Cloned {
        Cloned {
            disks: vec![None; point.disks.len()],
            warnings,
        }
    }
}

/// Restores by clone what of `point` (a point of the snapshot tier `tier`) can be, as
/// `request` asks, each disk to be written in `formats` (see the module docs). Blocking.
pub(super) fn restore_by_clone(
    tier: &SnapshotTier,
    point: &RecoveryPoint,
    request: &RestoreRequest,
    formats: &[DiskFormat],
) -> Cloned {
    let vm = &point.vm;
    let clones: Vec<Option<PathBuf>> = point
        .disks
        .iter()
        .map(|disk| tier.clone_of(vm, &point.id, &disk.name))
        .collect();
    let mut warnings = Vec::new();
    let missing: Vec<&str> = point
        .disks
        .iter()
        .zip(&clones)
        .filter(|(_, clone)| clone.is_none())
        .map(|(disk, _)| disk.name.as_str())
        .collect();
    // Surprising only where the tier keeps clones: some of this point's, or other points'.
    if !missing.is_empty() && (missing.len() < clones.len() || keeps_clones(tier, point)) {
        warnings.push(format!(
            "point {} of VM {vm} has no kept clone of disk(s) {} although the snapshot tier keeps \
             clones: restored from the tier's chunks instead of by clone",
            point.id,
            missing.join(", ")
        ));
    }
    if request.in_place {
        return in_place(point, &clones, request, warnings);
    }
    if !missing.is_empty() || !targets_free(point, request) {
        return Cloned::nothing(point, warnings);
    }
    let clones: Vec<PathBuf> = clones.into_iter().flatten().collect();
    match new_files(point, &clones, &request.target, formats) {
        Ok(disks) => Cloned {
            disks: disks.into_iter().map(Some).collect(),
            warnings,
        },
        Err(why) => {
            warnings.push(why);
            Cloned::nothing(point, warnings)
        }
    }
}

/// Whether the tier keeps clones of `point`'s VM for points other than `point`.
fn keeps_clones(tier: &SnapshotTier, point: &RecoveryPoint) -> bool {
    std::fs::read_dir(tier.clones_dir(&point.vm)).is_ok_and(|mut entries| {
        entries.any(|e| {
            e.is_ok_and(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && name != point.id.as_str()
            })
        })
    })
}

/// Whether every disk's target may be written as a new file: it does not exist, or
/// `overwrite` and it is a file. Otherwise the restore from the chunks refuses it.
fn targets_free(point: &RecoveryPoint, request: &RestoreRequest) -> bool {
    point.disks.iter().all(|disk| {
        match std::fs::symlink_metadata(request.target.join(disk.name.as_str())) {
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            Ok(meta) => meta.is_file() && request.overwrite,
        }
    })
}

/// The file a disk is cloned into before all are complete and renamed into place (the name
/// the restore from the chunks uses for its partial files).
fn partial_path(target: &Path, disk: &DiskName) -> PathBuf {
    target.join(format!(".{disk}.blockvault-partial"))
}

/// Clones every disk into its partial file, then renames them all into place; on failure
/// removes what it made and says why (a warning: the caller restores from the chunks).
fn new_files(
    point: &RecoveryPoint,
    clones: &[PathBuf],
    target: &Path,
    formats: &[DiskFormat],
) -> Result<Vec<(RestoredDisk, DiskRestore)>, String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let mut partials = Vec::with_capacity(clones.len());
    let made =
        point
            .disks
            .iter()
            .zip(clones)
            .zip(formats)
            .try_for_each(|((disk, clone), &format)| {
                check_clone(point, disk, clone, format)?;
                let partial = partial_path(target, &disk.name);
                if partial.exists() {
                    std::fs::remove_file(&partial)
                        .map_err(|e| format!("{}: {e}", partial.display()))?;
                }
                clone_file(clone, &partial).map_err(|e| why_not(point, disk, clone, target, &e))?;
                partials.push(partial.clone());
                File::open(&partial)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| format!("{}: {e}", partial.display()))
            });
    let renamed = made.and_then(|()| {
        for (n, (disk, partial)) in point.disks.iter().zip(&partials).enumerate() {
            let path = target.join(disk.name.as_str());
            if let Err(e) = std::fs::rename(partial, &path) {
                partials.drain(..n);
                return Err(format!("{}: {e}", path.display()));
            }
        }
        partials.clear();
        File::open(target)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", target.display()))
    });
    if let Err(why) = renamed {
        for partial in &partials {
            let _ = std::fs::remove_file(partial);
        }
        return Err(why);
    }
    Ok(point
        .disks
        .iter()
        .map(|disk| {
            restored(
                disk,
                target.join(disk.name.as_str()),
                std::slice::from_ref(&(0..disk.size)),
                RestoreMethod::Clone,
            )
        })
        .map(|(restored, how)| {
            // A qcow2 clone is written as it is; a raw one is raw whatever is to be made of it.
            let format = disk_format(point, &how.name);
            (restored, DiskRestore { format, ..how })
        })
        .collect())
}

/// Rolls back in place every disk that has a kept clone on the target's file system; the
/// others are left to the restore from the chunks.
fn in_place(
    point: &RecoveryPoint,
    clones: &[Option<PathBuf>],
    request: &RestoreRequest,
    mut warnings: Vec<String>,
) -> Cloned {
    // Every disk must be there, as a file, before any is touched: else the restore from the
    // chunks refuses it, with nothing written.
    let all_there = point.disks.iter().all(|disk| {
        std::fs::metadata(request.target.join(disk.name.as_str())).is_ok_and(|m| m.is_file())
    });
    if !all_there {
        return Cloned::nothing(point, warnings);
    }
    let disks = point
        .disks
        .iter()
        .zip(clones)
        .map(|(disk, clone)| {
            let clone = clone.as_ref()?;
            let target = request.target.join(disk.name.as_str());
            match check_clone(point, disk, clone, DiskFormat::Raw).and_then(|()| {
                rollback(clone, &target)
                    .map_err(|e| why_not(point, disk, clone, &request.target, &e))
            }) {
                Ok(ranges) => Some(restored(disk, target, &ranges, RestoreMethod::Clone)),
                Err(why) => {
                    warnings.push(why);
                    None
                }
            }
        })
        .collect();
    Cloned { disks, warnings }
}

/// The format `point` recorded for disk `name`.
fn disk_format(point: &RecoveryPoint, name: &DiskName) -> DiskFormat {
    point
        .disks
        .iter()
        .find(|d| d.name == *name)
        .map_or(DiskFormat::Raw, |d| d.format)
}

/// Whether the kept clone of `disk` stands for the point's disk, to be written as `format`:
/// a raw clone of the point's size (raw, or cloned then converted to qcow2 by the caller), or
/// a qcow2 clone (the disk was read from a qcow2 image) that holds the whole disk by itself
/// at the point's size, to be written as qcow2. Otherwise it is not used.
fn check_clone(
    point: &RecoveryPoint,
    disk: &DiskRecord,
    clone: &Path,
    format: DiskFormat,
) -> Result<(), String> {
    match disk.format {
        DiskFormat::Raw => {}
        DiskFormat::Qcow2 => return check_qcow2_clone(point, disk, clone, format),
        // Nothing here reads those headers: whether the file is the guest's whole disk by
        // itself (a vmdk descriptor names other files) is not known, so never trusted.
        other => {
            return Err(format!(
                "the kept clone of disk {} at point {} is a {other} file: restored from the \
                 tier's chunks",
                disk.name, point.id
            ));
        }
    }
    let len = std::fs::metadata(clone)
        .map_err(|e| format!("{}: {e}", clone.display()))?
        .len();
    if len != disk.size {
        return Err(format!(
            "the kept clone of disk {} at point {} is {len} bytes, not the point's {}: restored \
             from the tier's chunks",
            disk.name, point.id, disk.size
        ));
    }
    Ok(())
}

/// See [`check_clone`]: the kept clone of a disk read from a qcow2 image.
fn check_qcow2_clone(
    point: &RecoveryPoint,
    disk: &DiskRecord,
    clone: &Path,
    format: DiskFormat,
) -> Result<(), String> {
    if format != DiskFormat::Qcow2 {
        return Err(format!(
            "the kept clone of disk {} at point {} is a qcow2 file, and the disk is restored \
             {format}: restored from the tier's chunks",
            disk.name, point.id
        ));
    }
    let header = Qcow2Header::read(clone).map_err(|e| e.to_string())?;
    match header {
        Some(h) if h.self_contained() && h.virtual_size == disk.size => Ok(()),
        Some(h) if !h.self_contained() => Err(format!(
            "the kept clone of disk {} at point {} does not hold the whole disk by itself (a \
             backing file or an external data file): restored from the tier's chunks",
            disk.name, point.id
        )),
        Some(h) => Err(format!(
            "the kept clone of disk {} at point {} is a {} byte disk, not the point's {}: \
             restored from the tier's chunks",
            disk.name, point.id, h.virtual_size, disk.size
        )),
        None => Err(format!(
            "the kept clone of disk {} at point {} is not a qcow2 file: restored from the \
             tier's chunks",
            disk.name, point.id
        )),
    }
}

/// Why a disk was not restored by clone, for the job's warnings: a hint when the target is on
/// another file system or the file system cannot clone, the error otherwise.
fn why_not(
    point: &RecoveryPoint,
    disk: &DiskRecord,
    clone: &Path,
    target: &Path,
    e: &blockvault_capture::Error,
) -> String {
    let other_fs = !same_fs(clone, target).unwrap_or(true);
    if other_fs {
        format!(
            "disk {} restored from the snapshot tier's chunks, not by clone: the target {} is on \
             another file system than the snapshot tier ({}); a target on the tier's file system \
             restores instantly",
            disk.name,
            target.display(),
            clone.display()
        )
    } else if e.is_unsupported() {
        format!(
            "disk {} restored from the snapshot tier's chunks, not by clone: {e}",
            disk.name
        )
    } else {
        format!(
            "cloning back disk {} of point {} failed: {e}; restored from the snapshot tier's \
             chunks instead",
            disk.name, point.id
        )
    }
}

/// The report of a disk restored by clone: nothing written (the extents are shared), the
/// point's blocks the `ranges` cloned back counted as changed.
fn restored(
    disk: &DiskRecord,
    path: PathBuf,
    ranges: &[Range<u64>],
    method: RestoreMethod,
) -> (RestoredDisk, DiskRestore) {
    let block = u64::from(disk.block_size.get()).max(1);
    let mut changed = 0;
    let mut next = 0; // the first block not counted yet
    for range in ranges.iter().filter(|r| !r.is_empty()) {
        let first = (range.start / block).max(next);
        let end = range.end.div_ceil(block);
        changed += end.saturating_sub(first);
        next = next.max(end);
    }
    (
        RestoredDisk {
            name: disk.name.clone(),
            path,
            size: disk.size,
            bytes_written: 0,
            blocks: disk.blocks,
            blocks_changed: changed,
            bytes_scanned: 0,
        },
        DiskRestore {
            name: disk.name.clone(),
            method,
            ranges_cloned: ranges.iter().filter(|r| !r.is_empty()).count() as u64,
            bytes_cloned: ranges.iter().map(|r| r.end - r.start).sum(),
            format: DiskFormat::Raw,
        },
    )
}

/// The disks restored by clone: in place, each holds the point's map now (the known content to
/// give the restore from the chunks of the others).
pub(super) fn cloned_names(cloned: &Cloned, point: &RecoveryPoint) -> Vec<DiskName> {
    point
        .disks
        .iter()
        .zip(&cloned.disks)
        .filter(|(_, done)| done.is_some())
        .map(|(disk, _)| disk.name.clone())
        .collect()
}

/// Merges the restore from the chunks of the other disks (`rest`, every disk of the point)
/// with what was cloned: the per-disk reports and how each disk was restored.
pub(super) fn merge(
    cloned: Cloned,
    rest: Vec<RestoredDisk>,
) -> (Vec<RestoredDisk>, Vec<DiskRestore>) {
    let by_name: HashMap<DiskName, (RestoredDisk, DiskRestore)> = cloned
        .disks
        .into_iter()
        .flatten()
        .map(|(r, d)| (r.name.clone(), (r, d)))
        .collect();
    rest.into_iter()
        .map(|disk| match by_name.get(&disk.name) {
            Some((r, d)) => (r.clone(), d.clone()),
            None => {
                let how = DiskRestore {
                    name: disk.name.clone(),
                    method: RestoreMethod::Chunks,
                    ranges_cloned: 0,
                    bytes_cloned: 0,
                    format: DiskFormat::Raw,
                };
                (disk, how)
            }
        })
        .unzip()
}
