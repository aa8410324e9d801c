//! What a disk image file is known to hold, so that an in-place rollback between points costs
//! the blocks that differ, not a read of the whole disk.
//!
//! Raw images have no changed-block tracking. But when blockvault itself last read a disk
//! (a Snapshot during which nothing wrote to it) or wrote it (an in-place restore), it knows
//! the disk's content exactly: the block map of that point. A record of that, with the file's
//! identity and timestamps, stays true for as long as nothing writes to the file, and every
//! write through the kernel moves the file's change time (ctime), which no user can set back.
//! So an in-place restore that finds the file exactly as recorded (same device, inode, size,
//! mtime and ctime) diffs the recorded map against the point's instead of scanning the disk.
//!
//! Soundness: file timestamps move in ticks of the kernel's coarse clock (1-10 ms). A write
//! in the same tick as the write that set the recorded ctime would not move it. So a record is
//! only taken when its ctime is at least [`MARGIN`] older than the instant of the stat (after
//! a restore, blockvault waits for that); any later write then lands in a later tick and moves
//! ctime. A Snapshot records a disk only when its stat was the same before and after the read
//! (nothing wrote during the read). Anything in doubt (no record, a mismatch, a map that cannot
//! be read, a different disk shape, a record from before the last boot, a file system with
//! whole-second timestamps) means a full scan, never a skipped block. A Snapshot takes a
//! record only when a pre-snapshot hook quiesced the VM (a write the kernel has stamped may
//! still be in flight with asynchronous direct I/O). Not covered: a
//! writer that keeps the image mapped with `mmap` across the restore (the VM must be stopped,
//! as for any in-place restore), and a host whose clock is set back by more than the margin.
//!
//! Records live in `STATE_DIR/disks/<BLAKE3 of the canonical path>.json`; an in-place restore
//! deletes the records of its disks before it writes anything.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blockvault_core::StateDir;
use blockvault_core::{DiskName, PointId, VmName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How much older than the stat a file's ctime must be for the stat to vouch for the file.
pub(crate) const MARGIN: Duration = Duration::from_millis(50);

/// A file's identity and timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStat {
    pub(crate) fn of(path: &Path) -> std::io::Result<FileStat> {
        let m = std::fs::metadata(path)?;
        Ok(FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether the file's last change is at least [`MARGIN`] before `at`. Never on a file
    /// system whose timestamps have whole seconds only (a change time without nanoseconds):
    /// there a later write in the same second would not move it.
    pub(crate) fn settled_at(&self, at: Timestamp) -> bool {
        if self.ctime.1 == 0 {
            return false;
        }
        let Ok(ctime) = Timestamp::new(self.ctime.0, self.ctime.1 as i32) else {
            return false;
        };
        let margin = jiff::SignedDuration::try_from(MARGIN).unwrap_or_default();
        ctime + margin <= at
    }

    /// How long until the file's last change is [`MARGIN`] old.
    pub(crate) fn settles_in(&self) -> Duration {
        let Ok(ctime) = Timestamp::new(self.ctime.0, self.ctime.1 as i32) else {
            return MARGIN;
        };
        let age = Timestamp::now().duration_since(ctime);
        Duration::try_from(jiff::SignedDuration::try_from(MARGIN).unwrap_or_default() - age)
            .unwrap_or_default()
    }
}

/// This boot of the host: a record from another boot is never trusted (after a crash, data
/// that reached the disk may have outlived a timestamp update that did not).
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// "The file at `path`, as `stat` says, holds disk `disk` of point `point` of `vm`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiskState {
    /// The boot the record was taken in ([`boot_id`]).
    pub boot: String,
    pub path: PathBuf,
    pub stat: FileStat,
    /// When `stat` was taken.
    pub taken: Timestamp,
    pub vm: VmName,
    pub point: PointId,
    pub disk: DiskName,
    pub map_digest: String,
}

/// The records, one file each, in `STATE_DIR/disks`.
#[derive(Clone, Debug)]
pub(crate) struct DiskStates {
    dir: PathBuf,
}

impl DiskStates {
    pub(crate) fn new(state: &StateDir) -> DiskStates {
        DiskStates { dir: state.disks() }
    }

    fn file_of(&self, path: &Path) -> Option<PathBuf> {
        let canonical = std::fs::canonicalize(path).ok()?;
        let key = blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex();
        Some(self.dir.join(format!("{}.json", &key[..32])))
    }

    /// The record of the file at `path` if the file is still exactly as recorded.
    pub(crate) fn lookup(&self, path: &Path) -> Option<DiskState> {
        let bytes = std::fs::read(self.file_of(path)?).ok()?;
        let state: DiskState = serde_json::from_slice(&bytes).ok()?;
        let now = FileStat::of(path).ok()?;
        let canonical = std::fs::canonicalize(path).ok()?;
        let holds = !state.boot.is_empty()
            && state.boot == boot_id()
            && state.path == canonical
            && state.stat == now
            && state.stat.settled_at(state.taken);
        holds.then_some(state)
    }

    /// Records `state` (best effort: a record that cannot be written only costs a scan).
    pub(crate) fn record(&self, state: &DiskState) {
        let (Some(file), Ok(json)) = (self.file_of(&state.path), serde_json::to_vec(state)) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }

    /// Deletes the record of the file at `path`; an error means the record may still be
    /// there, so the caller must not write to the file.
    pub(crate) fn forget(&self, path: &Path) -> std::io::Result<()> {
        let Some(file) = self.file_of(path) else {
            return Ok(());
        };
        match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn state_of(path: &Path, taken: Timestamp) -> DiskState {
        DiskState {
            boot: boot_id(),
            path: std::fs::canonicalize(path).expect("canonical"),
            stat: FileStat::of(path).expect("stat"),
            taken,
            vm: VmName::new("vm").expect("vm"),
            point: PointId::generate(taken, b"p"),
            disk: DiskName::new("d.img").expect("disk"),
            map_digest: "00".repeat(32),
        }
    }

    #[test]
    fn a_record_holds_until_the_file_is_written_and_never_for_a_fresh_change() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("d.img");
        std::fs::write(&path, vec![1u8; 8192]).expect("write");
        let states = DiskStates::new(&StateDir::new(dir.path()));

        // Changed just now: the stat cannot vouch for the file yet.
        let fresh = state_of(&path, Timestamp::now());
        states.record(&fresh);
        assert!(states.lookup(&path).is_none());

        std::thread::sleep(FileStat::of(&path).expect("stat").settles_in());
        let settled = state_of(&path, Timestamp::now());
        states.record(&settled);
        assert_eq!(states.lookup(&path), Some(settled.clone()));

        // A write of the same size, with the mtime put back, still moves ctime.
        let mtime = std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.write_all(&[2u8; 16]).expect("write");
        file.set_modified(mtime).expect("set mtime");
        drop(file);
        assert!(states.lookup(&path).is_none());

        // A rename of another file over it changes the inode.
        states.record(&state_of(
            &path,
            Timestamp::now() + jiff::SignedDuration::from_secs(1),
        ));
        let other = dir.path().join("other.img");
        std::fs::write(&other, vec![1u8; 8192]).expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert!(states.lookup(&path).is_none());

        states.forget(&path).expect("forget");
        states.forget(&path).expect("forget twice");
    }
}
