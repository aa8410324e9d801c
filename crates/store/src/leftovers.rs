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
//! cut-off (the collection's grace period, an hour by default) belongs to a writer that died.
//! Even a writer that is somehow still there loses only its own put: its rename then fails and
//! it reports the error; nothing it had stored is touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::{Error, Result, Store, layout};

/// Staging leftovers found (and, unless counted only, removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Leftovers {
    pub files: u64,
    pub bytes: u64,
}

impl Leftovers {
    fn add(&mut self, other: Leftovers) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Whether `name` is a staging file's name: `<name>#<n>`, `n` decimal.
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(stem, n)| {
        !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

impl Store {
    /// Removes the staging files writers that died left in this store (and in a replicated
    /// vault's secondary) whose last write is older than `older_than`; with `count_only`,
    /// counts them and removes nothing. Stores that are not directories have none: an S3
    /// upload a killed writer left is the bucket's lifecycle rules' to abort (see the README).
    ///
    /// The directories that held only a leftover go too (listings would show them as
    /// prefixes), but for the chunk fan-out directories, which writers expect.
    pub async fn remove_staging_leftovers(
        &self,
        older_than: Duration,
        count_only: bool,
    ) -> Result<Leftovers> {
        let mut found = Leftovers::default();
        let roots = std::iter::once(self.dir.clone())
            .chain(std::iter::once(
                self.secondary().and_then(|s| s.dir.clone()),
            ))
            .flatten();
        for root in roots {
            let cut_off = SystemTime::now()
                .checked_sub(older_than)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let here = tokio::task::spawn_blocking(move || sweep(&root, cut_off, count_only))
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
            found.add(here);
        }
        Ok(found)
    }
}

/// Walks `root`, counting (and unless `count_only`, removing) staging files last written
/// before `cut_off`.
fn sweep(root: &Path, cut_off: SystemTime, count_only: bool) -> Result<Leftovers> {
    let mut found = Leftovers::default();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed meanwhile (its last object deleted).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            if !is_staging_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue; // renamed into place or removed meanwhile
            };
            if !meta.modified().is_ok_and(|written| written < cut_off) {
                continue;
            }
            if !count_only {
                match std::fs::remove_file(&path) {
                    Ok(()) => remove_empty_parents(root, &path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(Error::Io { path, source }),
                }
            }
            found.files += 1;
            found.bytes += meta.len();
        }
    }
    Ok(found)
}

/// Removes the directories above `removed` that are now empty, up to the root, keeping the
/// chunk fan-out directories (`chunks/<2 hex>`) and `chunks/` itself.
fn remove_empty_parents(root: &Path, removed: &Path) {
    let chunks = root.join(layout::chunks_root().as_ref());
    let mut dir: Option<PathBuf> = removed.parent().map(Path::to_owned);
    while let Some(here) = dir {
        if here == root || here.parent() == Some(chunks.as_path()) || here == chunks {
            return;
        }
        // Fails when not empty (or raced by a writer): then so are its parents.
        if std::fs::remove_dir(&here).is_err() {
            return;
        }
        dir = here.parent().map(Path::to_owned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_a_name_a_hash_and_digits() {
        for name in ["a.map#1", "0123abcd#42", "x#0"] {
            assert!(is_staging_name(name), "{name}");
        }
        for name in ["a.map", "#1", "a.map#", "a#1b", "a#b", "vault.config"] {
            assert!(!is_staging_name(name), "{name}");
        }
    }
}
