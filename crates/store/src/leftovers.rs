//! Staging files a killed writer left in a local store.
//!
//! A put into a directory writes a staging file `<name>#<n>` and renames it into place
//! (`LocalFileSystem`'s puts, its multipart uploads of large block maps, and the chunk files'
//! fallback path, see `chunk_files.rs`). An error or a dropped upload removes the staging file;
//! a process killed in between leaves it, and nothing would ever delete it: listings skip such
//! names, so they are neither objects nor garbage to the collection. Removing them is the
//! store's part of garbage collection (see
//! [`Store::remove_staging_leftovers`](crate::Store::remove_staging_leftovers)).
//!
//! A staging file is written by a put that runs for seconds, so one older than the caller's
//! cut-off (at least an hour in a vault's collection, which runs beside backups) belongs to a
//! writer that died. A writer that is somehow still there loses only that put: its rename
//! fails and it reports the error; nothing it had stored is touched.
//!
//! Only the vault's own directories are walked (`chunks/`, `maps/`, ... and the files at the
//! root), never what else a mount point holds (`lost+found`). Housekeeping must not stop a
//! collection: an entry that cannot be read or removed is skipped and counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::layout;

/// Staging leftovers found (and, unless counted only, removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub files: u64,
    pub bytes: u64,
    /// Directories that could not be read and leftovers that could not be removed: skipped.
    pub skipped: u64,
}

impl Leftovers {
    pub(crate) fn add(&mut self, other: Leftovers) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.skipped += other.skipped;
    }
}

/// Whether `name` is a staging file's name: `<name>#<n>`, `n` decimal (`LocalFileSystem`'s
/// rule: the first `#`).
pub(crate) fn is_staging_name(name: &[u8]) -> bool {
    match name.iter().position(|&b| b == b'#') {
        Some(hash) => {
            let n = &name[hash + 1..];
            hash > 0 && !n.is_empty() && n.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// Removes the staging files under the directory `root` whose last write is older than
/// `older_than` (any age when zero); with `count_only`, counts them and removes nothing. The
/// walk runs on a blocking thread.
///
/// A point's map directory that held only a leftover goes too: listings would show it as the
/// maps of a point that never committed, which nothing could delete.
pub(crate) async fn remove(root: PathBuf, older_than: Duration, count_only: bool) -> Leftovers {
    let cut_off = (!older_than.is_zero()).then(|| {
        SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    tokio::task::spawn_blocking(move || sweep(&root, cut_off, count_only))
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Walks the vault directories under `root`, counting (and unless `count_only`, removing)
/// staging files last written before `cut_off` (all of them without one).
fn sweep(root: &Path, cut_off: Option<SystemTime>, count_only: bool) -> Leftovers {
    let mut walk = Walk {
        maps: root.join(layout::maps_root().as_ref()),
        cut_off,
        count_only,
        found: Leftovers::default(),
        dirs: layout::TOP_LEVEL.iter().map(|d| root.join(d)).collect(),
    };
    // The files at the root (`vault.config`'s staging file), not what else it holds.
    walk.consider(root, false);
    while let Some(dir) = walk.dirs.pop() {
        walk.consider(&dir, true);
    }
    walk.found
}

/// A walk of one store's directories.
struct Walk {
    /// `<root>/maps`.
    maps: PathBuf,
    cut_off: Option<SystemTime>,
    count_only: bool,
    found: Leftovers,
    /// Directories still to look at.
    dirs: Vec<PathBuf>,
}

impl Walk {
    /// Looks at the entries of `dir`: leftovers are counted (and removed), subdirectories
    /// queued when `descend`.
    fn consider(&mut self, dir: &Path, descend: bool) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Not made yet, or removed meanwhile (its last object deleted).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {
                self.found.skipped += 1;
                return;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                self.found.skipped += 1;
                continue;
            };
            // Neither follows symlinks: a link is looked at as a link, never walked into.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if descend {
                    self.dirs.push(entry.path());
                }
                continue;
            }
            if !is_staging_name(entry.file_name().as_encoded_bytes()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue; // renamed into place or removed meanwhile
            };
            if let Some(cut_off) = self.cut_off
                && !meta.modified().is_ok_and(|written| written < cut_off)
            {
                continue;
            }
            if !self.count_only {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => self.remove_point_dir_if_empty(dir),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(_) => {
                        self.found.skipped += 1;
                        continue;
                    }
                }
            }
            self.found.files += 1;
            self.found.bytes += meta.len();
        }
    }

    /// Removes `dir` if it is a point's map directory (`maps/<vm>/<point>`) and now empty. No
    /// other: a writer may be about to put into `maps/<vm>` or `points/<vm>` (making the
    /// missing parent, then its file), while point ids are never reused.
    fn remove_point_dir_if_empty(&self, dir: &Path) {
        if dir.parent().and_then(Path::parent) == Some(self.maps.as_path()) {
            // Fails when not empty: then it stays.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_a_name_a_hash_and_digits() {
        for name in ["a.map#1", "0123abcd#42", "x#0"] {
            assert!(is_staging_name(name.as_bytes()), "{name}");
        }
        for name in [
            "a.map",
            "#1",
            "a.map#",
            "a#1b",
            "a#b",
            "a#1#2",
            "vault.config",
        ] {
            assert!(!is_staging_name(name.as_bytes()), "{name}");
        }
    }
}
