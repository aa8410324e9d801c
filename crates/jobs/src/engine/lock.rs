//! Advisory locks on files in the state directory (`flock`), held by an open file: the kernel
//! releases them when the holder exits, however it exits, so a killed process never leaves a
//! lock behind. Two opens of one file conflict even inside one process, so the same locks
//! order jobs within a process and across processes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::{Error, Result};

/// A held lock; released when dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Waits until the lock at `path` is free, then holds it. Blocks the calling thread: call
    /// from a blocking task.
    pub(crate) fn acquire(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| Error::lock(path, e.into()))?;
        Ok(Lock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Waits until no one holds the lock at `path` exclusively, then holds it shared (readers
    /// share; an exclusive holder waits for all of them). Blocks the calling thread.
    pub(crate) fn acquire_shared(path: &Path) -> Result<Lock> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockShared).map_err(|e| Error::lock(path, e.into()))?;
        Ok(Lock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// Holds the lock at `path` if it is free, or returns `None` at once.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock {
                _file: file,
                path: path.to_owned(),
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::lock(path, e.into())),
        }
    }

    /// Gives the lock file a new name; the lock stays held (it belongs to the open file).
    pub(crate) fn rename(&mut self, to: &Path) -> Result<()> {
        std::fs::rename(&self.path, to).map_err(|e| Error::lock(to, e))?;
        self.path = to.to_owned();
        Ok(())
    }

    /// Releases the lock and removes its file (only for locks whose name nobody else will
    /// take again, such as a dead process's).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::lock(parent, e))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
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
}
