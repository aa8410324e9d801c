//! Kept clones: on a file system with reflinks, a snapshot point also keeps a reflink clone of
//! each of its disks, taken at the point's instant. The clone is the fastest restore there is
//! (cloned back, in milliseconds whatever the disk's size), and the parent that the next
//! Snapshot's changed extents are found against.
//!
//! ```text
//! <root>/<vm>/clones/<point>/<disk>        the clones of a committed point's disks
//! <root>/<vm>/clones/.staging-<pid>-<n>/   a capture in progress (see `Staging`)
//! ```
//!
//! A capture is made in a staging directory and renamed to its point's name once the point is
//! committed, so a clone under a point's name always belongs to a committed point; a staging
//! directory that outlives its process is a leftover, deleted by the sweep.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use blockvault_core::{DiskName, PointId, VmName};

use crate::{Error, Result, SnapshotTier};

/// The directory under a VM's snapshot directory that holds its clones.
pub(crate) const CLONES: &str = "clones";
/// The prefix of staging directories under it.
pub(crate) const STAGING: &str = ".staging-";

/// Where one capture's clones are made before its point is committed. Dropped without
/// [`SnapshotTier::keep`], it removes them.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    kept: bool,
}

impl Staging {
    /// The staging directory, on the snapshot tier's file system.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the clone of `disk` goes.
    pub fn path(&self, disk: &DiskName) -> PathBuf {
        self.dir.join(disk.as_str())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl SnapshotTier {
    /// The directory of `vm`'s kept clones.
    pub fn clones_dir(&self, vm: &VmName) -> PathBuf {
        self.dir(vm).join(CLONES)
    }

    /// A new, empty staging directory for a capture of `vm`'s disks. Call with the VM's
    /// snapshot lock held.
    pub fn stage(&self, vm: &VmName) -> Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let clones = self.clones_dir(vm);
        std::fs::create_dir_all(&clones).map_err(|e| Error::io(&clones, e))?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = clones.join(format!("{STAGING}{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging { dir, kept: false })
    }

    /// Keeps the clones in `staging` as those of `vm`'s committed point `point`.
    pub fn keep(&self, vm: &VmName, mut staging: Staging, point: &PointId) -> Result<()> {
        let dir = self.clones_dir(vm).join(point.as_str());
        std::fs::rename(&staging.dir, &dir).map_err(|e| Error::io(&dir, e))?;
        staging.kept = true;
        let clones = self.clones_dir(vm);
        if let Ok(handle) = std::fs::File::open(&clones) {
            let _ = handle.sync_all();
        }
        Ok(())
    }

    /// The kept clone of `disk` at `vm`'s point `point`, if there is one.
    pub fn clone_of(&self, vm: &VmName, point: &PointId, disk: &DiskName) -> Option<PathBuf> {
        let path = self.clones_dir(vm).join(point.as_str()).join(disk.as_str());
        path.is_file().then_some(path)
    }
}
