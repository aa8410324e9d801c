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
//!
//! # Expiry, sweep and space
//!
//! A clone shares every extent its disk did not overwrite since, so it costs only what
//! diverged: [`SnapshotTier::usage`] and [`SnapshotTier::space`] count a clone's exclusive
//! bytes ([`blockvault_capture::exclusive_bytes`]), never its apparent size. The sweep (and so
//! an expiry) deletes every directory under `clones/` that is not a committed point of the VM
//! (an expired point's, or one whose record heal.rs set aside) and every staging directory
//! whose process is gone; what each clone frees is measured just before it is deleted (its
//! exclusive bytes then), so the report says what the file system really freed. An extent that
//! only two clones deleted by the same sweep shared is freed but counted in neither.
//!
//! A staging directory is named after its process id: the sweep keeps those of live processes.
//! Its own process's are kept too: the engine sweeps under the VM's snapshot lock, the lock a
//! capture holds from [`SnapshotTier::stage`] to [`SnapshotTier::keep`], so a staging directory
//! of the sweeping process is either in use by the capture that holds the lock (a sweep inside
//! it) or about to be removed by its [`Staging`]'s drop. A process id reused by an unrelated
//! process keeps a leftover until that process exits: it costs space, never a wrong delete.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
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

/// What the sweep of a VM's clones removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClonesSwept {
    /// Clone directories of points that are not committed (expired, set aside).
    pub(crate) points: usize,
    /// Staging directories of processes that are gone.
    pub(crate) staging: usize,
    /// What the file system freed (exclusive bytes of each clone just before its delete).
    pub(crate) bytes: u64,
}

/// Deletes every entry of the clones directory `clones` that is neither the clone directory of
/// a point in `committed` nor a staging directory of a live process (see the module docs).
pub(crate) fn sweep_clones(clones: &Path, committed: &HashSet<PointId>) -> Result<ClonesSwept> {
    let mut swept = ClonesSwept::default();
    let entries = match std::fs::read_dir(clones) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => return Err(Error::io(clones, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(clones, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(tail) = name.strip_prefix(STAGING) {
            if staging_in_use(tail) {
                continue;
            }
            swept.bytes += remove_freeing(&entry.path())?;
            swept.staging += 1;
            continue;
        }
        if committed.iter().any(|id| id.as_str() == name) {
            continue;
        }
        swept.bytes += remove_freeing(&entry.path())?;
        swept.points += 1;
    }
    Ok(swept)
}

/// Whether the staging directory `.staging-<tail>` may be in use: its process (`<pid>-<n>`)
/// is this one or still running. A name that does not parse is nobody's.
fn staging_in_use(tail: &str) -> bool {
    let Some(pid) = tail
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<i32>().ok())
    else {
        return false;
    };
    if u32::try_from(pid).is_ok_and(|pid| pid == std::process::id()) {
        return true;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    // EPERM: it runs, as another user.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Removes the file or directory tree at `path`; returns the bytes the file system freed:
/// each file's exclusive bytes measured just before its delete (its allocated bytes where the
/// file system has no extent map).
fn remove_freeing(path: &Path) -> Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !meta.is_dir() {
        let freed = if meta.is_file() {
            held_bytes(path, &meta)
        } else {
            0
        };
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(freed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(path, e)),
        };
    }
    let mut freed = 0;
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        freed += remove_freeing(&entry.path())?;
    }
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(freed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(freed),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The bytes the file at `path` holds that no other file shares: its exclusive bytes, or its
/// allocated bytes where the file system has no extent map.
pub(crate) fn held_bytes(path: &Path, meta: &std::fs::Metadata) -> u64 {
    blockvault_capture::exclusive_bytes(path).unwrap_or(meta.blocks() * 512)
}

/// What `vm`'s kept clones cost: the bytes the file system holds for them alone, and their
/// apparent size. Clones of points not committed (leftovers for the sweep) count too.
pub(crate) fn clones_space(clones: &Path) -> Result<(u64, u64)> {
    let (mut held, mut apparent) = (0, 0);
    let entries = match std::fs::read_dir(clones) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(Error::io(clones, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(clones, e))?.path();
        let (h, a) = dir_clones_space(&path)?;
        held += h;
        apparent += a;
    }
    Ok((held, apparent))
}

/// [`clones_space`] of one point's (or staging) directory.
fn dir_clones_space(dir: &Path) -> Result<(u64, u64)> {
    let (mut held, mut apparent) = (0, 0);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        // A stray file in `clones/`: not a directory of clones.
        Err(_) => return Ok((0, 0)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            held += held_bytes(&path, &meta);
            apparent += meta.len();
        }
    }
    Ok((held, apparent))
}

impl SnapshotTier {
    /// What the kept clones of `vm`'s point `point` cost: the bytes the file system holds for
    /// them alone (what diverged since, see [`blockvault_capture::exclusive_bytes`]); `None`
    /// when the point has no kept clone.
    pub fn clone_bytes(&self, vm: &VmName, point: &PointId) -> Result<Option<u64>> {
        let dir = self.clones_dir(vm).join(point.as_str());
        if !dir.is_dir() {
            return Ok(None);
        }
        Ok(Some(dir_clones_space(&dir)?.0))
    }
}
