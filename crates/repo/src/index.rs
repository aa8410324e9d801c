use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{ChunkId, ChunkSet};
use blockvault_store::Store;
use futures::TryStreamExt;

use crate::{Error, Result};

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

/// Appends ids to the index's journal as chunks land (shared by the upload tasks).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::sync::Mutex<File>,
}

impl Journal {
    /// Records that chunk `id` is in the vault. One small append, no fsync: it must survive the
    /// process being killed, and a host crash only costs re-sending some chunks.
    pub fn record(&self, id: &ChunkId) -> Result<()> {
        self.record_all(std::slice::from_ref(id))
    }

    /// Records chunks `ids`, in one append.
    pub fn record_all(&self, ids: &[ChunkId]) -> Result<()> {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| *id.as_bytes()).collect();
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&bytes).map_err(|e| Error::io(&self.path, e))
    }
}

const MAGIC: &[u8; 8] = b"BVINDEX\0";
const HEADER: usize = 24;

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

/// The ids of an index file, by the first 8 bytes of each (big endian, so they sort as the
/// ids do); the whole id is read from the file, kept open, when its prefix matches.
#[derive(Clone, Debug, Default)]
struct Saved {
    file: Option<Arc<File>>,
    prefixes: Vec<u64>,
}

fn prefix(id: &ChunkId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

impl Saved {
    fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the file names `id`: bisection on the prefixes, then a read of each id on file
    /// with the same prefix (nearly always one). A read that fails answers no: the index errs
    /// towards uploading.
    fn contains(&self, id: &ChunkId) -> bool {
        let first = prefix(id);
        let start = self.prefixes.partition_point(|&p| p < first);
        self.prefixes[start..]
            .iter()
            .take_while(|&&p| p == first)
            .enumerate()
            .any(|(k, _)| self.id_at(start + k).is_some_and(|on_file| on_file == *id))
    }

    /// The id at position `k` of the file.
    fn id_at(&self, k: usize) -> Option<ChunkId> {
        let mut id = [0u8; 32];
        let offset = (HEADER + 32 * k) as u64;
        self.file.as_ref()?.read_exact_at(&mut id, offset).ok()?;
        Some(ChunkId::from_bytes(id))
    }

    /// The ids on file, in order, read through a small buffer.
    fn ids<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = Result<ChunkId>> + 'a {
        const BATCH: usize = 1 << 15;
        let mut buf = Vec::new();
        let mut next = 0usize;
        let mut error = false;
        std::iter::from_fn(move || {
            if error || next >= self.len() {
                return None;
            }
            let in_buf = next % BATCH;
            if in_buf == 0 {
                let n = BATCH.min(self.len() - next);
                buf.resize(32 * n, 0);
                let offset = (HEADER + 32 * next) as u64;
                let read = match &self.file {
                    Some(file) => file.read_exact_at(&mut buf, offset),
                    None => Err(std::io::ErrorKind::NotFound.into()),
                };
                if let Err(e) = read {
                    error = true;
                    return Some(Err(Error::io(path, e)));
                }
            }
            next += 1;
            let mut id = [0u8; 32];
            id.copy_from_slice(&buf[32 * in_buf..32 * in_buf + 32]);
            Some(Ok(ChunkId::from_bytes(id)))
        })
    }

    /// The file at `path`, if it is whole: read through a small buffer, hashed as it is
    /// read, and checked to be sorted and distinct. A file that is missing, short, long,
    /// damaged or out of order is `None`: a cache miss.
    fn read(path: &Path) -> Option<Saved> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
        let mut hasher = blake3::Hasher::new();
        let mut header = [0u8; HEADER];
        reader.read_exact(&mut header).ok()?;
        hasher.update(&header);
        if &header[..8] != MAGIC || header[8..10] != 1u16.to_le_bytes() {
            return None;
        }
        let count = u64::from_le_bytes(header[16..24].try_into().ok()?);
        // The length must match before anything is allocated for `count`.
        if Some(len) != count.checked_mul(32)?.checked_add((HEADER + 32) as u64) {
            return None;
        }
        let mut prefixes = Vec::with_capacity(usize::try_from(count).ok()?);
        let mut last: Option<ChunkId> = None;
        let mut id = [0u8; 32];
        for _ in 0..count {
            reader.read_exact(&mut id).ok()?;
            hasher.update(&id);
            let id = ChunkId::from_bytes(id);
            if last.is_some_and(|last| last >= id) {
                return None;
            }
            prefixes.push(prefix(&id));
            last = Some(id);
        }
        let mut digest = [0u8; 32];
        reader.read_exact(&mut digest).ok()?;
        drop(reader);
        (hasher.finalize().as_bytes() == &digest).then(|| Saved {
            file: Some(Arc::new(file)),
            prefixes,
        })
    }

    /// Writes a file of `count` ids at `tmp` (for the index at `path`, named in errors): the
    /// ids of `kept` (sorted) merged with `side` (sorted, none of them in `kept`), hashed as
    /// they go, fsynced. Returns it open, with its prefixes.
    fn write(
        tmp: &Path,
        path: &Path,
        count: usize,
        kept: impl Iterator<Item = Result<ChunkId>>,
        side: impl Iterator<Item = ChunkId>,
    ) -> Result<Saved> {
        let io = |e| Error::io(path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(io)?;
        let mut prefixes = Vec::with_capacity(count);
        {
            let mut out = HashingWriter {
                inner: std::io::BufWriter::with_capacity(1 << 20, &file),
                hasher: blake3::Hasher::new(),
            };
            out.write_all(MAGIC).map_err(io)?;
            out.write_all(&1u16.to_le_bytes()).map_err(io)?;
            out.write_all(&[0u8; 6]).map_err(io)?;
            out.write_all(&(count as u64).to_le_bytes()).map_err(io)?;
            let mut side = side.peekable();
            let mut put = |id: ChunkId| -> Result<()> {
                prefixes.push(prefix(&id));
                out.write_all(id.as_bytes()).map_err(io)
            };
            for id in kept {
                let id = id?;
                while let Some(first) = side.next_if(|s| *s < id) {
                    put(first)?;
                }
                put(id)?;
            }
            for id in side {
                put(id)?;
            }
            if prefixes.len() != count {
                return Err(io(std::io::Error::other(format!(
                    "could not read the index back to save it: {} ids written, {count} expected",
                    prefixes.len()
                ))));
            }
            let digest = out.hasher.finalize();
            let mut writer = out.inner;
            writer.write_all(digest.as_bytes()).map_err(io)?;
            writer.flush().map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        Ok(Saved {
            file: Some(Arc::new(file)),
            prefixes,
        })
    }
}

/// The ids of two sorted, distinct lists, in order, each once.
fn union<'a>(a: &'a [ChunkId], b: &'a [ChunkId]) -> impl Iterator<Item = ChunkId> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x < y => a.next().copied(),
        (Some(x), Some(y)) if y < x => b.next().copied(),
        (Some(_), Some(_)) => {
            b.next();
            a.next().copied()
        }
        (Some(_), None) => a.next().copied(),
        (None, _) => b.next().copied(),
    })
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn journal_path(index: &Path) -> PathBuf {
    index.with_extension("log")
}

/// The GC epoch the index at `index` was last made consistent with, in `chunks.epoch`.
fn read_epoch(index: &Path) -> Option<String> {
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

/// The ids in a journal; a torn last record (the process died mid-append) is ignored.
fn read_journal(path: &Path) -> Vec<ChunkId> {
    std::fs::read(path)
        .map(|bytes| {
            bytes
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockvault_core::ForgottenChunks;

    #[tokio::test]
    async fn an_index_one_sweep_behind_drops_what_it_forgot_instead_of_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_memory();
        let [a, b, c, late] = ["a", "b", "c", "late"].map(|n| ChunkId::of(n.as_bytes()));
        for id in [a, b, c] {
            store
                .put_chunk(&id, b"x".to_vec().into())
                .await
                .expect("put");
        }
        let path = dir.path().join("v/chunks.idx");
        ChunkIndex::load_or_rebuild(&store, &path, None)
            .await
            .expect("built before any sweep");
        // A sweep elsewhere: it ships its candidates, moves the epoch, deletes b. Another host
        // then uploads `late`: a listing would find it, the forgotten list does not name it.
        let sweep = |epoch: &'static str, previous: Option<&'static str>| {
            let store = store.clone();
            async move {
                let forgotten = ForgottenChunks {
                    previous: previous.map(str::to_owned),
                    ids: ChunkSet::from_vec(vec![b]),
                };
                store
                    .put_forgotten(epoch, forgotten.encode())
                    .await
                    .expect("ship");
                store
                    .put_gc_epoch(&blockvault_core::GcEpoch {
                        id: epoch.to_owned(),
                        time: jiff::Timestamp::now(),
                    })
                    .await
                    .expect("epoch");
            }
        };
        sweep("e1", None).await;
        store.delete_chunk(&b).await.expect("delete");
        store
            .put_chunk(&late, b"x".to_vec().into())
            .await
            .expect("put");

        let index = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
            .await
            .expect("load");
        assert_eq!(index.all_ids(), ChunkSet::from_vec(vec![a, c]).as_slice());
        assert_eq!(
            read_epoch(&path).as_deref(),
            Some("e1"),
            "moved to the new epoch"
        );

        // Two sweeps behind (the list names another previous epoch): rebuilt from a listing.
        sweep("e3", Some("e2")).await;
        let index = ChunkIndex::load_or_rebuild(&store, &path, Some("e3"))
            .await
            .expect("load");
        assert_eq!(
            index.all_ids(),
            ChunkSet::from_vec(vec![a, c, late]).as_slice()
        );
    }

    #[tokio::test]
    async fn a_journal_left_in_a_directory_vault_makes_writers_ask_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Store::local(dir.path()).expect("store");
        let path = dir.path().join("state/chunks.idx");
        let load = |store: Store| {
            let path = path.clone();
            async move {
                ChunkIndex::load_or_rebuild(&store, &path, None)
                    .await
                    .expect("load")
            }
        };
        let index = load(local.clone()).await;
        assert!(!index.may_lack_landed(), "a fresh index lacks nothing");
        // A writer opened the journal and was killed before its first sync recorded anything.
        let journal = index.journal().expect("journal");
        drop(journal);
        assert!(load(local.clone()).await.may_lack_landed());
        assert!(
            !load(Store::in_memory()).await.may_lack_landed(),
            "where every put is recorded as it lands, the journal is the whole story"
        );
        // A writer that finishes saves the index, which removes the journal.
        load(local.clone())
            .await
            .add_and_save(&ChunkSet::from_iter([ChunkId::of(b"a")]))
            .expect("save");
        assert!(!load(local).await.may_lack_landed());
    }

    #[tokio::test]
    async fn the_index_rebuilds_from_the_store_and_survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_memory();
        let a = ChunkId::of(b"a");
        store
            .put_chunk(&a, b"x".to_vec().into())
            .await
            .expect("put");
        let path = dir.path().join("v/chunks.idx");
        let mut index = ChunkIndex::load_or_rebuild(&store, &path, None)
            .await
            .expect("rebuild");
        assert!(index.contains(&a) && index.len() == 1);
        let b = ChunkId::of(b"b");
        index.add_and_save(&ChunkSet::from_iter([b])).expect("save");
        let again = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
            .await
            .expect("load");
        assert!(
            again.contains(&a) && again.contains(&b),
            "loaded from the file, not the store"
        );

        // Ids journaled by a backup that was killed are folded in at the next load.
        let c = ChunkId::of(b"c");
        index
            .journal()
            .expect("journal")
            .record(&c)
            .expect("record");
        drop(index);
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(path.with_extension("log"))
            .expect("log");
        Write::write_all(&mut torn, &[1, 2, 3]).expect("torn record");
        let loaded = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
            .await
            .expect("load");
        assert!(
            loaded.contains(&c) && loaded.len() == 3,
            "journal folded in, torn tail ignored"
        );
        assert!(
            !path.with_extension("log").exists(),
            "journal emptied once saved"
        );

        // A damaged file is a cache miss: rebuilt from the store.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[30] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let rebuilt = ChunkIndex::load_or_rebuild(&store, &path, None)
            .await
            .expect("rebuild");
        assert!(rebuilt.contains(&a) && !rebuilt.contains(&b));

        // A sweep elsewhere (a new epoch) makes the saved index stale: rebuilt from the store.
        let mut index = rebuilt;
        index.add_and_save(&ChunkSet::from_iter([b])).expect("save");
        let after_gc = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
            .await
            .expect("rebuild");
        assert!(
            !after_gc.contains(&b),
            "b is not in the store: the stale index was dropped"
        );
        let mut same = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, Some("e1"))
            .await
            .expect("load");
        assert!(same.contains(&a), "same epoch: loaded from the file");
        // A sweep on this host updates the index in place.
        same.forget([a], "e2").expect("forget");
        let swept = ChunkIndex::load_or_rebuild(&store, &path, Some("e2"))
            .await
            .expect("load");
        assert!(
            !swept.contains(&a),
            "loaded from the file, without the swept chunk"
        );
    }

    #[tokio::test]
    async fn writers_saving_one_index_at_once_never_fail_and_leave_a_whole_file() {
        // Two backup jobs of one host save the same index: each write has its own temp file,
        // so no rename finds its temp file taken by the other.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v/chunks.idx");
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("runtime");
                    let mut index = rt
                        .block_on(ChunkIndex::load_or_rebuild(
                            &Store::in_memory(),
                            &path,
                            None,
                        ))
                        .expect("load");
                    for n in 0..40u8 {
                        index.add_and_save(&ChunkSet::from_iter([ChunkId::of(&[w, n])]))?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer").expect("every save succeeds");
        }
        let last = ChunkIndex::load_current(&path, None).expect("a whole, sound file");
        assert!(last.len() >= 40, "one writer's whole index: {}", last.len());
        let strays: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(strays.is_empty(), "no temp file left: {strays:?}");
    }

    #[tokio::test]
    async fn ids_sharing_their_first_bytes_are_told_apart_from_the_file_this_index_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v/chunks.idx");
        // Three ids with one 8-byte prefix, and a probe with the same prefix that is absent.
        let twin = |last: u8| {
            let mut bytes = [7u8; 32];
            bytes[31] = last;
            ChunkId::from_bytes(bytes)
        };
        let (a, b, c, absent) = (twin(1), twin(2), twin(4), twin(3));
        let mut index = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
            .await
            .expect("empty");
        index
            .add_and_save(&ChunkSet::from_iter([c, a, ChunkId::of(b"other"), b]))
            .expect("save");
        assert!([a, b, c].iter().all(|id| index.contains(id)));
        assert!(!index.contains(&absent) && !index.contains(&twin(0)) && !index.contains(&twin(9)));

        // Another process saves a different index over the path: this one still answers from
        // the file it wrote, and saves on top of it.
        let mut other = ChunkIndex::load_current(&path, None).expect("load");
        other.remove([a, b]).expect("save");
        assert!(
            index.contains(&a) && index.contains(&b),
            "its own file, still open"
        );
        index
            .add_and_save(&ChunkSet::from_iter([absent]))
            .expect("save");
        let last = ChunkIndex::load_current(&path, None).expect("load");
        assert_eq!(last.all_ids().len(), 5);
        assert!([a, b, c, absent].iter().all(|id| last.contains(id)));

        // A journal folded in without a save is answered from memory.
        last.journal()
            .expect("journal")
            .record(&twin(0))
            .expect("record");
        let loaded = ChunkIndex::load_current(&path, None).expect("load");
        assert!(loaded.contains(&twin(0)) && loaded.len() == 6);
    }

    #[tokio::test]
    async fn a_large_index_keeps_every_id_sorted_on_file_and_refuses_a_file_out_of_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v/chunks.idx");
        let store = Store::in_memory();
        let mut index = ChunkIndex::load_or_rebuild(&store, &path, None)
            .await
            .expect("empty");
        assert!(index.is_empty());
        // Ids in no order, with duplicates, added in two batches.
        let all: Vec<ChunkId> = (0u32..20_000)
            .map(|n| ChunkId::of(&n.to_le_bytes()))
            .collect();
        index
            .add_and_save(&all[..12_000].iter().rev().copied().collect())
            .expect("save");
        index
            .add_and_save(&all[8_000..].iter().chain(&all[..100]).copied().collect())
            .expect("save");
        assert_eq!(index.len(), all.len(), "duplicates dropped");
        let on_file = std::fs::read(&path).expect("read");
        assert_eq!(on_file.len(), HEADER + 32 * all.len() + 32);
        let loaded = ChunkIndex::load_current(&path, None).expect("loaded from the file");
        let listed = loaded.all_ids();
        let mut expected = all.clone();
        expected.sort_unstable();
        assert_eq!(listed, expected, "ascending, one each");
        assert!(all.iter().all(|id| loaded.contains(id)));
        assert!(!loaded.contains(&ChunkId::of(b"absent")));

        // GC forgets some, in any order.
        let mut loaded = loaded;
        loaded
            .forget(all[..5_000].iter().rev().copied(), "e1")
            .expect("forget");
        let after = ChunkIndex::load_current(&path, Some("e1")).expect("load");
        assert_eq!(after.len(), all.len() - 5_000);
        assert!(!after.contains(&all[0]) && after.contains(&all[5_000]));

        // A file whose ids are out of order (with a valid checksum) is not trusted: the store
        // (empty here) is listed instead.
        let mut bytes = std::fs::read(&path).expect("read");
        let body = bytes.len() - 32;
        bytes.copy_within(HEADER..HEADER + 32, HEADER + 32 * 10);
        let digest = blake3::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(digest.as_bytes());
        std::fs::write(&path, &bytes).expect("write");
        assert!(ChunkIndex::load_current(&path, Some("e1")).is_none());
        let rebuilt = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
            .await
            .expect("rebuild");
        assert!(rebuilt.is_empty(), "rebuilt from the store");

        // A file cut short is a miss too, not an allocation of the count it claims.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        assert!(ChunkIndex::load_current(&path, Some("e1")).is_none());
    }
}
