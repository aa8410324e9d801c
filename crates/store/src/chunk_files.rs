//! Chunk files of a local directory store: each written whole and its data made durable before
//! it appears under its name, the directory entries made durable in batches.
//!
//! A chunk put into a directory used to cost what `LocalFileSystem` with fsync does: create a
//! staging file, write, fsync it, rename it into place, fsync the directory. On ext4 without a
//! journal (the benchmark machine) that is six device round trips in sequence: data, inode,
//! the staging entry's directory block, a cache flush, then the directory block and another
//! flush; in both the snapshot tier and a directory vault. perf showed a full backup's tail
//! waiting on them, and 1.3 s of system time.
//!
//! Here a chunk is written into an unnamed file (`O_TMPFILE`) in its final directory, its data
//! and size flushed with `fdatasync`, then linked under its name: the name appears only with
//! the whole, durable content behind it, and no staging entry is ever written. The directory
//! entry itself becomes durable at the next [`ChunkFiles::sync`], which fsyncs each directory
//! that gained an entry since the previous one (at most the 256 fan-out directories and
//! `chunks/`, however many chunks landed). Nothing may record a chunk as stored (the chunk
//! index's journal, a point record naming it) before that sync returns:
//! [`Store::sync_chunks`](crate::Store::sync_chunks) is the barrier, and
//! [`Store::put_point`](crate::Store::put_point) passes it first.
//!
//! Where `O_TMPFILE` or the `/proc/self/fd` link is not available (another OS, a file system
//! without it, no `/proc`), and when a chunk file already exists (a damaged chunk sent again
//! must replace it), the chunk goes through a staging file `<name>#<n>` (the name
//! `LocalFileSystem` uses, which listings skip and garbage collection removes when a writer
//! died and left it; see `leftovers.rs`) renamed
//! into place, with the same batched directory sync.
//!
//! A crash before the sync loses at most chunks nothing recorded yet: their names may be gone,
//! never their content behind a name.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The chunk files under one store root.
#[derive(Debug)]
pub(crate) struct ChunkFiles {
    root: PathBuf,
    /// Directories that gained an entry since the last sync.
    unsynced: Mutex<BTreeSet<PathBuf>>,
    /// Whether `O_TMPFILE` + link works here (cleared at its first failure).
    tmpfile: AtomicBool,
    /// Distinguishes the staging files of concurrent writers of one chunk.
    staging: AtomicU64,
}

impl ChunkFiles {
    pub(crate) fn new(root: PathBuf) -> ChunkFiles {
        ChunkFiles {
            root,
            unsynced: Mutex::new(BTreeSet::new()),
            tmpfile: AtomicBool::new(cfg!(target_os = "linux")),
            staging: AtomicU64::new(0),
        }
    }

    /// Writes `bytes` as the file `key` (relative to the root): complete and its data durable
    /// when it appears under that name, the name durable after the next [`ChunkFiles::sync`].
    /// An existing file is replaced.
    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.root.join(key);
        let dir = path
            .parent()
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "a key with no parent"))?;
        if self.tmpfile.load(Ordering::Relaxed) {
            match self.put_unnamed(dir, &path, bytes)? {
                Written::Linked => {
                    self.unsynced(dir);
                    return Ok(());
                }
                Written::Exists | Written::NotLinked => {}
                Written::Unsupported => self.tmpfile.store(false, Ordering::Relaxed),
            }
        }
        self.put_staged(dir, &path, bytes)?;
        self.unsynced(dir);
        Ok(())
    }

    /// Makes the directory entries of every chunk put before this call durable.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let dirs =
            std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        for (done, dir) in dirs.iter().enumerate() {
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                // Not synced: kept for the next try, so a failed sync is never taken for done.
                self.unsynced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(dirs.iter().skip(done).cloned());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Makes durable every entry under the directory `under` (relative to the root) and its
    /// subdirectories, one level down: the fan-out directories of `chunks/` after a listing
    /// that may have seen another process's chunks before their sync.
    pub(crate) fn sync_every_entry(&self, under: &str) -> std::io::Result<()> {
        let top = self.root.join(under);
        if top.is_dir() {
            self.unsynced(&top);
            for entry in std::fs::read_dir(&top)? {
                let path = entry?.path();
                if path.is_dir() {
                    self.unsynced(&path);
                }
            }
        }
        self.sync()
    }

    /// Marks the directory of `key`, a chunk found in place, for the next sync: a chunk
    /// another process put moments ago may not be durable under its name yet, and whoever
    /// skips it on the strength of finding it must not commit before it is.
    pub(crate) fn found(&self, key: &str) {
        if let Some(dir) = self.root.join(key).parent() {
            self.unsynced(dir);
        }
    }

    /// Marks directory `dir` for the next sync.
    fn unsynced(&self, dir: &Path) {
        self.unsynced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dir.to_owned());
    }

    /// Creates `dir` if it is missing, and marks each directory that gained an entry for the
    /// next sync (a new fan-out directory's name in `chunks/` must be durable too).
    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut missing = Vec::new();
        let mut at = dir;
        while !at.exists() && at != self.root {
            missing.push(at);
            at = at.parent().unwrap_or(&self.root);
        }
        for created in missing.iter().rev() {
            match std::fs::create_dir(created) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(parent) = created.parent() {
                self.unsynced(parent);
            }
        }
        Ok(())
    }

    /// `O_TMPFILE` in `dir`, written, `fdatasync`ed, then linked as `path`.
    #[cfg(target_os = "linux")]
    fn put_unnamed(&self, dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<Written> {
        use rustix::fs::{AtFlags, CWD, Mode, OFlags};
        use rustix::io::Errno;
        use std::os::fd::AsRawFd;

        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o644);
        let open = || rustix::fs::open(dir, flags, mode);
        let fd = match open() {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                self.create_dir(dir)?;
                open()?
            }
            // The file system or kernel has no O_TMPFILE.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return Ok(Written::Unsupported),
            Err(e) => return Err(e.into()),
        };
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        file.sync_data()?;
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        match rustix::fs::linkat(CWD, &proc_path, CWD, path, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => Ok(Written::Linked),
            Err(Errno::EXIST) => Ok(Written::Exists),
            // A sandbox that refuses the link, or no /proc.
            Err(Errno::XDEV | Errno::PERM | Errno::ACCESS) => Ok(Written::Unsupported),
            Err(Errno::NOENT) if !Path::new("/proc/self/fd").is_dir() => Ok(Written::Unsupported),
            // The directory went away meanwhile: the staged path creates it again.
            Err(_) => Ok(Written::NotLinked),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn put_unnamed(&self, _: &Path, _: &Path, _: &[u8]) -> std::io::Result<Written> {
        Ok(Written::Unsupported)
    }

    /// A staging file beside `path`, written, `fdatasync`ed, then renamed over `path`.
    fn put_staged(&self, dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let n = self.staging.fetch_add(1, Ordering::Relaxed);
        let mut staging = path.as_os_str().to_owned();
        // Digits only (listings skip `<name>#<digits>`), the process id at a fixed width so
        // that two processes' names never meet.
        staging.push(format!("#{:010}{n}", std::process::id()));
        let staging = PathBuf::from(staging);
        let create = || File::options().write(true).create_new(true).open(&staging);
        let mut file = match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create_dir(dir)?;
                create()?
            }
            other => other?,
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_data())
            .and_then(|()| std::fs::rename(&staging, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        written
    }
}

/// What became of an unnamed write.
enum Written {
    /// Linked under its name.
    Linked,
    /// The name was taken: the caller replaces the file through a staging file.
    Exists,
    /// Not linked this time (its directory vanished meanwhile): the caller stages it.
    NotLinked,
    /// `O_TMPFILE` or the link through `/proc` does not work here: the caller stages this
    /// chunk and every later one.
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
        out.sort();
        out
    }

    fn both_ways(test: impl Fn(&ChunkFiles, &Path)) {
        for unnamed in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let files = ChunkFiles::new(dir.path().to_owned());
            files.tmpfile.store(unnamed, Ordering::Relaxed);
            test(&files, dir.path());
            if cfg!(target_os = "linux") {
                // The unnamed path really ran (it turns itself off where it cannot).
                assert_eq!(files.tmpfile.load(Ordering::Relaxed), unnamed);
            }
        }
    }

    #[test]
    fn a_chunk_appears_whole_under_its_name_and_nothing_else_is_left() {
        both_ways(|files, root| {
            files.put("chunks/ab/abcd", b"first").expect("put");
            files.put("chunks/cd/cdef", b"second").expect("put");
            assert_eq!(
                std::fs::read(root.join("chunks/ab/abcd")).expect("read"),
                b"first"
            );
            assert_eq!(
                files_under(root),
                [
                    root.join("chunks/ab/abcd").display().to_string(),
                    root.join("chunks/cd/cdef").display().to_string(),
                ]
            );
        });
    }

    #[test]
    fn a_chunk_put_again_replaces_the_file() {
        // A chunk verify found damaged is sent again and must not keep its bad bytes.
        both_ways(|files, root| {
            files.put("chunks/ab/abcd", b"rotten").expect("put");
            files
                .put("chunks/ab/abcd", b"good bytes")
                .expect("put again");
            assert_eq!(
                std::fs::read(root.join("chunks/ab/abcd")).expect("read"),
                b"good bytes"
            );
            assert_eq!(files_under(root).len(), 1, "{:?}", files_under(root));
        });
    }

    #[test]
    fn sync_covers_every_directory_that_gained_an_entry_and_then_none() {
        both_ways(|files, root| {
            files.put("chunks/ab/abcd", b"x").expect("put");
            files.put("chunks/ab/abce", b"y").expect("put");
            let pending = files
                .unsynced
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            // The fan-out directory (two new entries), `chunks/` (a new fan-out directory) and
            // the root (a new `chunks/`).
            let expected: BTreeSet<PathBuf> =
                [root.to_owned(), root.join("chunks"), root.join("chunks/ab")].into();
            assert_eq!(pending, expected);
            files.sync().expect("sync");
            assert!(
                files
                    .unsynced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty()
            );
        });
    }

    #[test]
    fn a_failed_sync_keeps_its_directories_for_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ChunkFiles::new(dir.path().to_owned());
        files.put("chunks/ab/abcd", b"x").expect("put");
        let gone = dir.path().join("chunks/ab");
        std::fs::remove_dir_all(&gone).expect("remove");
        assert!(files.sync().is_err());
        assert!(
            files
                .unsynced
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&gone)
        );
    }

    #[test]
    fn a_put_into_a_missing_root_fails_with_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ChunkFiles::new(dir.path().join("missing"));
        std::fs::write(dir.path().join("missing"), b"a file, not a directory").expect("write");
        let err = files
            .put("chunks/ab/abcd", b"x")
            .expect_err("a file in the way");
        assert_ne!(err.kind(), ErrorKind::NotFound, "{err}");
    }
}
