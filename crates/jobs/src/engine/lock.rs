//! Advisory locks on files in the state directory (`flock`), held by an open file: the kernel
//! releases them when the holder exits, however it exits, so a killed process never leaves a
//! lock behind. Two opens of one file conflict even inside one process, so the same locks
//! order jobs within a process and across processes.
//!
//! A lock file may be removed, but only by a holder of its lock ([`Lock::remove`]). Whoever
//! opened it before the removal and locks it after holds a lock on a file no one else can
//! open any more: so every acquisition checks, once it holds the lock, that the path still
//! names the file it locked, and starts again when it does not.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::{Error, Result};

/// A held lock; released when dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
    path: PathBuf,
}

/// What [`Lock::try_existing`] found at a path.
#[derive(Debug)]
pub(crate) enum Probe {
    /// Someone holds the lock.
    Held,
    /// The lock was free; now it is held.
    Free(Lock),
    /// There is no lock file.
    Missing,
}

impl Lock {
    /// Waits until the lock at `path` is free, then holds it. Blocks the calling thread: call
    /// from a blocking task.
    pub(crate) fn acquire(path: &Path) -> Result<Lock> {
        let held = lock(path, true, FlockOperation::LockExclusive)?;
        held.ok_or_else(|| Error::lock(path, std::io::ErrorKind::WouldBlock.into()))
    }

    /// Waits until no one holds the lock at `path` exclusively, then holds it shared (readers
    /// share; an exclusive holder waits for all of them). Blocks the calling thread.
    pub(crate) fn acquire_shared(path: &Path) -> Result<Lock> {
        let held = lock(path, true, FlockOperation::LockShared)?;
        held.ok_or_else(|| Error::lock(path, std::io::ErrorKind::WouldBlock.into()))
    }

    /// Holds the lock at `path` if it is free, or returns `None` at once.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        lock(path, true, FlockOperation::NonBlockingLockExclusive)
    }

    /// Holds the lock at `path` if its file exists and the lock is free; never creates the
    /// file.
    pub(crate) fn try_existing(path: &Path) -> Result<Probe> {
        match lock(path, false, FlockOperation::NonBlockingLockExclusive) {
            Ok(Some(held)) => Ok(Probe::Free(held)),
            Ok(None) => Ok(Probe::Held),
            Err(Error::Lock { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Probe::Missing)
            }
            Err(e) => Err(e),
        }
    }

    /// The open lock file (to read or set its times).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock file, then releases the lock (only for locks whose name nobody else
    /// takes again while this one lives: a job's, a dead process's).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Opens (creating it when `create`) and locks the file at `path` with `operation`, until the
/// path names the file that is locked; `None` when a non-blocking `operation` would block.
fn lock(path: &Path, create: bool, operation: FlockOperation) -> Result<Option<Lock>> {
    loop {
        let file = open(path, create)?;
        match flock(&file, operation) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(Error::lock(path, e.into())),
        }
        // Its holder may have removed the file between our open and our lock.
        let locked = file.metadata().map_err(|e| Error::lock(path, e))?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                return Ok(Some(Lock {
                    file,
                    path: path.to_owned(),
                }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => continue,
            Err(e) => return Err(Error::lock(path, e)),
        }
    }
}

fn open(path: &Path, create: bool) -> Result<File> {
    if create && let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::lock(parent, e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::lock(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("locks").join("vm.snapshot");
        let held = Lock::acquire(&path).expect("acquire");
        assert!(Lock::try_acquire(&path).expect("try").is_none());
        drop(held);
        assert!(Lock::try_acquire(&path).expect("try").is_some());
    }

    #[test]
    fn a_probe_never_creates_the_file_and_tells_held_from_free() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("job-1");
        assert!(matches!(Lock::try_existing(&path), Ok(Probe::Missing)));
        assert!(!path.exists(), "a probe creates nothing");
        let held = Lock::acquire(&path).expect("acquire");
        assert!(matches!(Lock::try_existing(&path), Ok(Probe::Held)));
        drop(held);
        assert!(matches!(Lock::try_existing(&path), Ok(Probe::Free(_))));
    }

    /// Opened before its holder removed it, locked after: the lock must be on a file that the
    /// path still names, or two holders would each think they hold it.
    #[test]
    fn a_lock_taken_on_a_removed_file_is_taken_again_on_the_new_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("job-7");
        let first = Lock::acquire(&path).expect("acquire");
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || Lock::acquire(&path).expect("acquire after removal"))
        };
        // The waiter has opened the file and blocks in flock.
        std::thread::sleep(std::time::Duration::from_millis(100));
        first.remove();
        let second = waiter.join().expect("waiter");
        let on_disk = std::fs::metadata(&path).expect("the path names a file again");
        let held = second.file().metadata().expect("held");
        assert_eq!((on_disk.dev(), on_disk.ino()), (held.dev(), held.ino()));
        assert!(matches!(Lock::try_existing(&path), Ok(Probe::Held)));
    }
}
