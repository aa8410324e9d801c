//! Temp files for this host's caches (the chunk index, the mark cache), written whole and then
//! renamed over the real file.
//!
//! Each write gets a name of its own, so two processes (two backup jobs) saving one file at
//! once never rename each other's temp file away; the last rename wins. A write that fails
//! removes its temp file; one whose process was killed leaves it behind, and
//! [`sweep_stale`] removes it once it is clearly nobody's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A temp file untouched this long belongs to no live write (a save takes seconds at most).
const STALE: Duration = Duration::from_secs(3600);

/// A temp name beside `path` that no other write uses, this process's or another's.
pub(crate) fn private(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    path.with_extension(format!("tmp-{}-{n}", std::process::id()))
}

/// Writes a temp file with `write`, then renames it over `path`; on any failure the temp file
/// is removed and `path` is untouched.
pub fn replace<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    rename_error: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    let tmp = private(path);
    let done = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(rename_error));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Removes the temp files of `path` (from `private`) that killed processes left behind:
/// those untouched for an hour. Best effort: a cache directory that cannot be listed is
/// left as it is.
pub fn sweep_stale(path: &Path) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else {
        return;
    };
    let prefix = format!("{}.tmp-", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let ours = entry.file_name().to_string_lossy().starts_with(&prefix);
        let stale = || {
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some(now.duration_since(modified).ok()? > STALE)
        };
        if ours && stale() == Some(true) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_only_old_strays_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chunks.idx");
        std::fs::write(&path, b"old").expect("write");
        let failed = replace(
            &path,
            |tmp| {
                std::fs::write(tmp, b"half").expect("write");
                Err("disk full")
            },
            |_| "rename",
        );
        assert_eq!(failed, Err("disk full"));
        assert_eq!(std::fs::read(&path).expect("read"), b"old", "untouched");
        let names = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(), ["chunks.idx"], "the temp file is gone");

        // A killed writer's temp file, an hour and more old; a live writer's, fresh; and a
        // file of another cache that only looks alike.
        let stray = dir.path().join("chunks.tmp-999999-0");
        let live = private(&path);
        let other = dir.path().join("marks.tmp-999999-0");
        for file in [&stray, &live, &other] {
            std::fs::write(file, b"x").expect("write");
        }
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        for file in [&stray, &other] {
            std::fs::File::options()
                .write(true)
                .open(file)
                .and_then(|f| f.set_modified(old))
                .expect("age it");
        }
        sweep_stale(&path);
        assert!(!stray.exists(), "the stale stray is removed");
        assert!(live.exists(), "a fresh temp file may be a live write");
        assert!(other.exists(), "another file's temp files are not ours");
    }
}
