use std::path::{Path, PathBuf};

use blockvault_core::{ChunkId, ChunkSet};
use blockvault_store::Store;
use futures::TryStreamExt;

use crate::{Error, Result};

mod journal;
mod saved;
#[cfg(test)]
mod tests;

pub use journal::Journal;

use journal::{journal_path, read_journal};
use saved::{Saved, union};

/// What a vault is known to hold, kept on this host so that a backup decides what to upload
/// without asking the store about every chunk (no `HEAD` per chunk: on S3 that is a round trip
/// each, and Garage ignores conditional writes, so asking is all a `HEAD` could do).
///
/// The index is a cache of the vault, never the truth: when its file is missing or unreadable
/// it is rebuilt by listing `chunks/`. It only errs on the side of uploading too much: another
/// host's uploads are missing from it (a duplicate PUT of content-addressed data is harmless),
/// and chunks are only ever removed by garbage collection, which must invalidate it.
///
/// File format: magic `BVINDEX\0`, u16 version (1), 6 reserved bytes, u64 count, the sorted
/// 32-byte ids, then BLAKE3 of everything before it.
///
/// In memory the index keeps 8 bytes an id: the first 8 bytes of each id on file, in the
/// file's order, searched by bisection. When one matches, the whole id is read from the file
/// (one `pread`, from the page cache), which this index keeps open: another process saving
/// the index renames a new file over the path, never changes this one. A million chunks cost
/// 8 MB, where the whole ids cost 32 MB, and a backup job holds two indexes (the snapshot
/// tier's and the vault's). Ids known beyond the file (a journal folded in without a save)
/// are kept whole until the next save. Saves stream the file through small buffers, never
/// holding a copy of it.
///
/// Beside it, `chunks.log` is a journal of ids that landed since the index was last saved,
/// appended one by one during a backup ([`ChunkIndex::journal`]). A backup that is killed
/// mid-transfer loses none of them: the next load folds the journal in, so the next backup
/// sends only what is still missing.
#[derive(Clone, Debug)]
pub struct ChunkIndex {
    path: PathBuf,
    /// The ids on file.
    saved: Saved,
    /// Ids known beyond `saved`, none of them in it; empty after a save.
    extra: ChunkSet,
    /// See [`ChunkIndex::may_lack_landed`].
    may_lack_landed: bool,
}

impl ChunkIndex {
    /// The index at `path`, or one rebuilt from the store's listing when the file is missing
    /// or does not decode (and then saved).
    ///
    /// `epoch` is the vault's GC epoch ([`Store::gc_epoch`]): an index saved under another
    /// epoch may name chunks a sweep deleted since, so it is rebuilt too.
    pub async fn load_or_rebuild(
        store: &Store,
        path: &Path,
        epoch: Option<&str>,
    ) -> Result<ChunkIndex> {
        crate::tmp::sweep_stale(path);
        let journal = journal_path(path);
        // A writer that stopped before saving (killed) left its journal, which in a local
        // directory names only the chunks it had synced (see `landed.rs`).
        let may_lack_landed = journal.exists() && store.syncs_chunks_in_batches();
        let journaled = ChunkSet::from_vec(read_journal(&journal));
        let saved_epoch = read_epoch(path);
        let current = saved_epoch.as_deref() == epoch;
        let on_file = |saved| ChunkIndex {
            path: path.to_owned(),
            saved,
            extra: ChunkSet::new(),
            may_lack_landed,
        };
        if let Some(saved) = current.then(|| Saved::read(path)).flatten() {
            let mut index = on_file(saved);
            if !journaled.is_empty() {
                index.rewrite(&journaled, &ChunkSet::new())?;
            }
            return Ok(index);
        }
        // One sweep behind: what that sweep may have deleted is all this index can wrongly
        // name (journaled chunks included), so it drops those instead of listing everything.
        if let Some(epoch) = epoch
            && let Some(saved) = Saved::read(path)
            && let Some(forgotten) = store.forgotten(epoch).await?
            && forgotten.previous == saved_epoch
        {
            let mut index = on_file(saved);
            index.rewrite(&journaled, &forgotten.ids)?;
            write_epoch(path, Some(epoch))?;
            return Ok(index);
        }
        // The listing includes whatever the journal recorded, and chunks of a writer that
        // has not synced them yet: they are synced before the index names them.
        let ids: Vec<ChunkId> = store.list_chunks().try_collect().await?;
        store.sync_every_chunk().await?;
        let mut index = ChunkIndex {
            path: path.to_owned(),
            saved: Saved::default(),
            extra: ChunkSet::from_vec(ids),
            may_lack_landed: false,
        };
        index.rewrite(&ChunkSet::new(), &ChunkSet::new())?;
        write_epoch(path, epoch)?;
        Ok(index)
    }

    /// The index on file at `path` if it is consistent with GC epoch `epoch`, with its journal
    /// folded in; never rebuilt.
    pub fn load_current(path: &Path, epoch: Option<&str>) -> Option<ChunkIndex> {
        if read_epoch(path).as_deref() != epoch {
            return None;
        }
        let saved = Saved::read(path)?;
        let journaled = read_journal(&journal_path(path));
        let extra = ChunkSet::from_iter(journaled.into_iter().filter(|id| !saved.contains(id)));
        Some(ChunkIndex {
            path: path.to_owned(),
            saved,
            extra,
            may_lack_landed: false,
        })
    }

    /// Drops chunks a sweep on this host just deleted and records the sweep's epoch, so this
    /// host's next backup need not rebuild the index from a listing.
    pub fn forget(
        &mut self,
        deleted: impl IntoIterator<Item = ChunkId>,
        epoch: &str,
    ) -> Result<()> {
        self.rewrite(&ChunkSet::new(), &ChunkSet::from_iter(deleted))?;
        write_epoch(&self.path, Some(epoch))
    }

    /// Drops chunks found bad (they must be sent again), keeping the epoch.
    pub fn remove(&mut self, bad: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        self.rewrite(&ChunkSet::new(), &ChunkSet::from_iter(bad))
    }

    /// A journal to record chunks as they land.
    pub fn journal(&self) -> Result<Journal> {
        let path = journal_path(&self.path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Journal {
            path,
            file: std::sync::Mutex::new(file),
        })
    }

    /// Whether the store may hold chunks this index does not name, put by a writer of this
    /// host that was killed before it recorded them (in a local directory, chunks are
    /// recorded in batches). A writer then asks the store, a `stat` there, about each chunk
    /// the index does not name, so a retry does not write them again.
    pub fn may_lack_landed(&self) -> bool {
        self.may_lack_landed
    }

    /// Whether the index names `id`. Safe to call from many threads at once.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.extra.contains(id) || self.saved.contains(id)
    }

    pub fn len(&self) -> usize {
        self.saved.len() + self.extra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds the journal into the index, saves the file and empties the journal: what a
    /// writer that keeps no list of what landed does when it fails (it journaled them all).
    pub fn save_journaled(&mut self) -> Result<()> {
        let journaled = ChunkSet::from_vec(read_journal(&journal_path(&self.path)));
        self.rewrite(&journaled, &ChunkSet::new())
    }

    /// Records chunks now known to be in the vault, saves the file and empties the journal.
    /// The set is merged as the file is written, not copied.
    pub fn add_and_save(&mut self, ids: &ChunkSet) -> Result<()> {
        self.rewrite(ids, &ChunkSet::new())
    }

    /// Saves the index with `add` and without `remove`, then empties the journal (everything
    /// journaled is in the index by then: the loads fold it in).
    ///
    /// The new file is the old one merged with the ids kept in memory, streamed from the file
    /// this index holds open, so the index is never in memory whole. It is written atomically:
    /// a temp file of this save's own (see [`crate::tmp`]), hashed as it goes, fsynced, then
    /// renamed. Two processes of this host may save at once (two backup jobs): the last rename
    /// wins (the index only errs towards uploading too much), and each keeps the file it wrote.
    fn rewrite(&mut self, add: &ChunkSet, remove: &ChunkSet) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        // The ids to write beside the file's: the ones in memory that are new to it, merged
        // as they are read (an `add` of a million ids is not copied).
        let beside = || {
            union(self.extra.as_slice(), add.as_slice())
                .filter(|id| !self.saved.contains(id) && !remove.contains(id))
        };
        // Counted first: the header, hashed before the body, holds the count.
        let side = beside().count();
        let gone = remove.iter().filter(|id| self.saved.contains(id)).count();
        let count = self.saved.len() - gone + side;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut written = None;
        crate::tmp::replace(
            &self.path,
            |tmp| {
                let kept = self.saved.ids(&self.path).filter(|id| match id {
                    Ok(id) => !remove.contains(id),
                    Err(_) => true,
                });
                written = Some(Saved::write(tmp, &self.path, count, kept, beside())?);
                Ok(())
            },
            io,
        )?;
        if let Some(saved) = written {
            self.saved = saved;
            self.extra = ChunkSet::new();
        }
        match std::fs::remove_file(journal_path(&self.path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    /// Every id, in ascending order (read from the file).
    #[cfg(test)]
    fn all_ids(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .saved
            .ids(&self.path)
            .collect::<Result<_>>()
            .expect("read");
        ids.extend(self.extra.iter());
        ids.sort_unstable();
        ids
    }
}

/// The GC epoch the index at `index` was last made consistent with, in `chunks.epoch`.
pub(super) fn read_epoch(index: &Path) -> Option<String> {
    std::fs::read_to_string(index.with_extension("epoch"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn write_epoch(index: &Path, epoch: Option<&str>) -> Result<()> {
    let path = index.with_extension("epoch");
    match epoch {
        Some(epoch) => std::fs::write(&path, epoch).map_err(|e| Error::io(&path, e)),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        },
    }
}
