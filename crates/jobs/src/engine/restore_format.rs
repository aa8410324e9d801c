//! The format a restore writes each disk in: the format its point recorded (a disk read from a
//! qcow2 or vmdk image comes back as a qcow2 or vmdk file), or the one the restore asks for,
//! for every disk.
//!
//! ```text
//! all raw          the restore as it always was (new files or in place)
//! some not raw     every target checked (none replaced unless --overwrite) -> the point
//!                  restored into a hidden staging directory inside the target directory (by
//!                  clone, or from the chunks as sparse raw files) -> each disk not already in
//!                  its format: qemu-img convert -f raw -O FORMAT (sparse, standalone: no
//!                  backing file) into a hidden partial file -> all renamed into place ->
//!                  fsync of the directory -> the staging directory removed
//! ```
//!
//! On any failure the staging directory and the partial files are removed: nothing is left
//! under a disk's final name. A killed restore leaves only hidden names behind
//! (`.blockvault-restore-*`, `.DISK.blockvault-FORMAT`), as the restore of raw files leaves
//! its partial files. In place, the point is written over the existing images, raw: an image
//! in any other format (by its header) is refused (a point holds the guest's disk, not the
//! image file), and so is asking for another format than raw.

use std::fs::File;
use std::path::{Path, PathBuf};

use blockvault_core::{DiskFormat, DiskName, RecoveryPoint};
use blockvault_qemu::convert_to;
use blockvault_source::detect_format;
use blockvault_vault::{RestoreReport, RestoreRequest};

use super::clone_restore::DiskRestore;
use crate::{Error, Result};

/// The format each disk of `point` is written in: `asked` for all, else as recorded; always
/// raw in place (asking for another format in place is refused, and so is an image in place
/// whose header says a QEMU format: qcow2, an overlay on a base image, vmdk, ...).
/// Checked before anything is written.
pub(super) fn restore_formats(
    request: &RestoreRequest,
    point: &RecoveryPoint,
    asked: Option<DiskFormat>,
) -> Result<Vec<DiskFormat>> {
    if !request.in_place {
        return Ok(point
            .disks
            .iter()
            .map(|d| asked.unwrap_or(d.format))
            .collect());
    }
    if let Some(asked) = asked.filter(|f| !f.is_raw()) {
        return Err(Error::InvalidValue {
            what: "restore format",
            value: asked.to_string(),
            expected: format!(
                "raw in place (the images are rolled back as they are); restore into a new \
                 directory to write {asked} files"
            ),
        });
    }
    for disk in &point.disks {
        let path = request.target.join(disk.name.as_str());
        // Not only the header: a disk read in another format may be a file whose header is
        // not at its start (a fixed VHD's footer is at its end). Such a target is written only
        // when it is a raw image of the guest's size by now (the VM was converted to raw).
        let header = detect_format(&path).unwrap_or_default();
        let len = std::fs::metadata(&path).ok().map(|m| m.len());
        let not_raw = if !header.is_raw() {
            Some(header)
        } else if !disk.format.is_raw() && len.is_some_and(|len| len != disk.size) {
            Some(disk.format)
        } else {
            None
        };
        if let Some(format) = not_raw {
            return Err(Error::InvalidValue {
                what: "in-place restore target",
                value: path.display().to_string(),
                expected: format!(
                    "a raw disk image: this one is {format}, and a point holds the guest's \
                     disk, not the {format} file, so writing it over the image would destroy \
                     it; restore it as a new {format} file instead: blockvault restore --vm {} \
                     --point {} --to NEWDIR --format {format}",
                    point.vm, point.id
                ),
            });
        }
    }
    Ok(vec![DiskFormat::Raw; point.disks.len()])
}

/// A restore into new files of which some are qcow2: the point goes to [`Staged::dir`] first,
/// and [`Staged::finish`] converts and renames it into place. Dropped unfinished, it removes
/// the staging directory and every partial file.
pub(super) struct Staged {
    dir: tempfile::TempDir,
    target: PathBuf,
    overwrite: bool,
    /// The format each disk is to be written in, by name.
    formats: Vec<(DiskName, DiskFormat)>,
    /// The partial converted files made so far (removed on drop).
    partials: Vec<PathBuf>,
}

impl Staged {
    /// Checks every disk's target (a file that exists is replaced only with `overwrite`, and
    /// only once everything is ready; anything else than a file is refused) and makes the
    /// staging directory in the target directory (created if missing). `None` when every
    /// disk is raw: the restore needs no staging.
    pub(super) fn new(
        request: &RestoreRequest,
        point: &RecoveryPoint,
        formats: &[DiskFormat],
    ) -> Result<Option<Staged>> {
        if request.in_place || formats.iter().all(DiskFormat::is_raw) {
            return Ok(None);
        }
        let target = &request.target;
        for disk in &point.disks {
            check_target(&target.join(disk.name.as_str()), request.overwrite)?;
        }
        std::fs::create_dir_all(target).map_err(|e| io(target, e))?;
        let dir = tempfile::Builder::new()
            .prefix(".blockvault-restore-")
            .tempdir_in(target)
            .map_err(|e| io(target, e))?;
        Ok(Some(Staged {
            dir,
            target: target.clone(),
            overwrite: request.overwrite,
            formats: point
                .disks
                .iter()
                .map(|d| d.name.clone())
                .zip(formats.iter().copied())
                .collect(),
            partials: Vec::new(),
        }))
    }

    /// The request that restores the point into the staging directory.
    pub(super) fn request(&self, request: &RestoreRequest) -> RestoreRequest {
        RestoreRequest {
            target: self.dir.path().to_owned(),
            overwrite: false,
            ..request.clone()
        }
    }

    /// Converts the staged disks to be in another format than raw (those not cloned in it
    /// already), renames every disk into place, and says where each went and in which
    /// format. Blocking.
    pub(super) fn finish(
        mut self,
        report: &mut RestoreReport,
        how: &mut [DiskRestore],
    ) -> Result<()> {
        let mut ready = Vec::with_capacity(report.disks.len());
        for disk in &report.disks {
            let want = self.format_of(&disk.name);
            let staged = self.dir.path().join(disk.name.as_str());
            let done = how.iter().find(|h| h.name == disk.name).map(|h| h.format);
            if !want.is_raw() && done != Some(want) {
                let partial = partial_path(&self.target, &disk.name, want);
                remove_if_there(&partial)?;
                self.partials.push(partial.clone());
                convert_to(&staged, &partial, want)?;
                // The raw file is not needed any more: its space back before the next disk.
                let _ = std::fs::remove_file(&staged);
                ready.push(partial);
            } else {
                ready.push(staged);
            }
        }
        // Checked again: something may have appeared meanwhile.
        for disk in &report.disks {
            check_target(&self.target.join(disk.name.as_str()), self.overwrite)?;
        }
        for (disk, from) in report.disks.iter_mut().zip(&ready) {
            let path = self.target.join(disk.name.as_str());
            std::fs::rename(from, &path).map_err(|e| io(&path, e))?;
            disk.path = path;
        }
        self.partials.clear();
        File::open(&self.target)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&self.target, e))?;
        for h in how.iter_mut() {
            h.format = self.format_of(&h.name);
        }
        Ok(())
    }

    fn format_of(&self, disk: &DiskName) -> DiskFormat {
        self.formats
            .iter()
            .find(|(name, _)| name == disk)
            .map_or(DiskFormat::Raw, |(_, format)| *format)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for partial in &self.partials {
            let _ = std::fs::remove_file(partial);
        }
        // `dir` removes itself, with whatever the restore left in it.
    }
}

/// The hidden file a disk is converted into before it is renamed into place.
fn partial_path(target: &Path, disk: &DiskName, format: DiskFormat) -> PathBuf {
    target.join(format!(".{disk}.blockvault-{format}"))
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

/// Refuses a target that exists, unless `overwrite`, and one that is not a file (as the
/// restore of raw files does).
fn check_target(path: &Path, overwrite: bool) -> Result<()> {
    use blockvault_repo::Error as R;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, e)),
        Ok(meta) if !meta.is_file() => Err(R::TargetNotAFile {
            path: path.to_owned(),
        }
        .into()),
        Ok(_) if !overwrite => Err(R::TargetExists {
            path: path.to_owned(),
        }
        .into()),
        Ok(_) => Ok(()),
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}
