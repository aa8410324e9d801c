//! Staging files a killed writer left in a local store.
//!
//! A put into a directory writes a staging file `<name>#<n>` and renames it into place
//! (`LocalFileSystem`'s puts, its multipart uploads of large block maps, and the chunk files'
//! fallback path, see `chunk_files.rs`). An error or a dropped upload removes the staging file;
//! a process killed in between leaves it, and nothing would ever delete it: listings skip such
//! names, so they are neither objects nor garbage to the collection. Removing them is the
//! store's part of garbage collection (see [`Store::remove_staging_leftovers`]).
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

use crate::{Store, layout};

/// Staging leftovers found (and, unless counted only, removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub files: u64,
    pub bytes: u64,
    /// Directories that could not be read and leftovers that could not be removed: skipped.
    pub skipped: u64,
}

impl Leftovers {
    fn add(&mut self, other: Leftovers) {
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

impl Store {
    /// Removes the staging files writers that died left in this store (and in a replicated
    /// vault's secondary) whose last write is older than `older_than` (any age when zero);
    /// with `count_only`, counts them and removes nothing. Stores that are not directories
    /// have none: an S3 upload a killed writer left is the bucket's lifecycle rules' to abort
    /// (see the README).
    ///
    /// A point's map directory that held only a leftover goes too: listings would show it as
    /// the maps of a point that never committed, which nothing could delete.
    pub async fn remove_staging_leftovers(
        &self,
        older_than: Duration,
        count_only: bool,
    ) -> Leftovers {
        let mut found = Leftovers::default();
        let roots = std::iter::once(self.dir.clone())
            .chain(std::iter::once(
                self.secondary().and_then(|s| s.dir.clone()),
            ))
            .flatten();
        for root in roots {
            let cut_off = (!older_than.is_zero()).then(|| {
                SystemTime::now()
                    .checked_sub(older_than)
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            });
            let here = tokio::task::spawn_blocking(move || sweep(&root, cut_off, count_only))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            found.add(here);
        }
        found
    }
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
    use std::fs;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Writes a file at `root`/`rel` (parents made) last written `age` ago, or `ahead` of now.
    fn file(root: &Path, rel: &str, age: Duration, ahead: bool) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, b"half").expect("write");
        let now = SystemTime::now();
        let when = if ahead { now + age } else { now - age };
        let handle = fs::File::options().write(true).open(&path).expect("open");
        handle.set_modified(when).expect("mtime");
        path
    }

    #[tokio::test]
    async fn old_leftovers_go_from_both_stores_of_a_replicated_vault_and_nothing_else() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let store = Store::local(a.path())
            .expect("a")
            .replicated(Store::local(b.path()).expect("b"));
        let point_dir = "maps/vm/20260101-000000-0000";
        let dead_map = file(a.path(), &format!("{point_dir}/d.map#1"), 2 * HOUR, false);
        let config = file(a.path(), "vault.config#3", 2 * HOUR, false);
        let record = file(
            b.path(),
            "points/vm/20260101-000000-0000#5",
            2 * HOUR,
            false,
        );
        // Kept: young; not a staging name; outside the vault's directories.
        let young = file(
            a.path(),
            &format!("chunks/ab/{}#2", "ab".repeat(32)),
            HOUR / 60,
            false,
        );
        let named = file(
            a.path(),
            "maps/vm/20260101-000000-0001/d.map",
            2 * HOUR,
            false,
        );
        let foreign = file(a.path(), "lost+found/#1234#1", 2 * HOUR, false);

        let counted = store.remove_staging_leftovers(HOUR, true).await;
        assert_eq!((counted.files, counted.bytes, counted.skipped), (3, 12, 0));
        assert!(
            dead_map.exists() && config.exists() && record.exists(),
            "counted only"
        );

        let removed = store.remove_staging_leftovers(HOUR, false).await;
        assert_eq!(removed, counted);
        for gone in [&dead_map, &config, &record] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        assert!(
            !a.path().join(point_dir).exists(),
            "its point's directory went"
        );
        assert!(
            a.path().join("maps/vm").exists(),
            "the VM's directory stays"
        );
        for kept in [&young, &named, &foreign] {
            assert!(kept.exists(), "{}", kept.display());
        }

        // Without an age (the snapshot tier, under its lock), even one dated ahead goes.
        let ahead = file(a.path(), "points/vm/x#1", HOUR, true);
        let all = store.remove_staging_leftovers(Duration::ZERO, false).await;
        assert_eq!(all.files, 2, "{all:?}");
        assert!(!young.exists() && !ahead.exists());
        assert!(
            a.path().join("chunks/ab").exists(),
            "fan-out directories stay"
        );
    }

    #[tokio::test]
    async fn stores_that_are_not_directories_have_no_leftovers() {
        let found = Store::in_memory()
            .remove_staging_leftovers(Duration::ZERO, false)
            .await;
        assert_eq!(found, Leftovers::default());
    }

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
