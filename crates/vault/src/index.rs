use std::collections::HashSet;
use std::path::{Path, PathBuf};

use blockvault_core::ChunkId;
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
/// Beside it, `chunks.log` is a journal of ids that landed since the index was last saved,
/// appended one by one during a backup ([`ChunkIndex::journal`]). A backup that is killed
/// mid-transfer loses none of them: the next load folds the journal in, so the next backup
/// sends only what is still missing.
#[derive(Clone, Debug)]
pub struct ChunkIndex {
    path: PathBuf,
    ids: HashSet<ChunkId>,
}

/// Appends ids to the index's journal as chunks land (shared by the upload tasks).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: std::sync::Mutex<std::fs::File>,
}

impl Journal {
    /// Records that chunk `id` is in the vault. One small append, no fsync: it must survive the
    /// process being killed, and a host crash only costs re-sending some chunks.
    pub fn record(&self, id: &ChunkId) -> Result<()> {
        use std::io::Write;
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(id.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
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
        let journaled = read_journal(&journal_path(path));
        let current = read_epoch(path).as_deref() == epoch;
        if let Some(ids) = std::fs::read(path)
            .ok()
            .filter(|_| current)
            .and_then(|b| decode(&b))
        {
            let mut index = ChunkIndex {
                path: path.to_owned(),
                ids,
            };
            if !journaled.is_empty() {
                index.add_and_save(journaled)?;
            }
            return Ok(index);
        }
        // The listing includes whatever the journal recorded.
        let ids: HashSet<ChunkId> = store.list_chunks().try_collect().await?;
        let index = ChunkIndex {
            path: path.to_owned(),
            ids,
        };
        index.save()?;
        write_epoch(path, epoch)?;
        Ok(index)
    }

    /// The index on file at `path` if it is consistent with GC epoch `epoch`, with its journal
    /// folded in; never rebuilt.
    pub fn load_current(path: &Path, epoch: Option<&str>) -> Option<ChunkIndex> {
        if read_epoch(path).as_deref() != epoch {
            return None;
        }
        let ids = std::fs::read(path).ok().and_then(|b| decode(&b))?;
        let mut ids = ids;
        ids.extend(read_journal(&journal_path(path)));
        Some(ChunkIndex {
            path: path.to_owned(),
            ids,
        })
    }

    /// Drops chunks a sweep on this host just deleted and records the sweep's epoch, so this
    /// host's next backup need not rebuild the index from a listing.
    pub fn forget(
        &mut self,
        deleted: impl IntoIterator<Item = ChunkId>,
        epoch: &str,
    ) -> Result<()> {
        for id in deleted {
            self.ids.remove(&id);
        }
        self.save()?;
        write_epoch(&self.path, Some(epoch))
    }

    /// Drops chunks found bad (they must be sent again), keeping the epoch.
    pub fn remove(&mut self, bad: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        for id in bad {
            self.ids.remove(&id);
        }
        self.save()
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

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.ids.contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &ChunkId> {
        self.ids.iter()
    }

    /// Records chunks now known to be in the vault, saves the file and empties the journal.
    pub fn add_and_save(&mut self, ids: impl IntoIterator<Item = ChunkId>) -> Result<()> {
        self.ids.extend(ids);
        self.save()
    }

    /// Writes the file atomically: a temp file, fsync, rename.
    fn save(&self) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut sorted: Vec<&ChunkId> = self.ids.iter().collect();
        sorted.sort_unstable();
        let mut out = Vec::with_capacity(HEADER + sorted.len() * 32 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&[0u8; 6]);
        out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
        for id in sorted {
            out.extend_from_slice(id.as_bytes());
        }
        let digest = blake3::hash(&out);
        out.extend_from_slice(digest.as_bytes());
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, &out).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        // Everything journaled is in the saved index now.
        match std::fs::remove_file(journal_path(&self.path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
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

fn decode(bytes: &[u8]) -> Option<HashSet<ChunkId>> {
    if bytes.len() < HEADER + 32 || &bytes[..8] != MAGIC || bytes[8..10] != 1u16.to_le_bytes() {
        return None;
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != digest {
        return None;
    }
    let count = u64::from_le_bytes(body[16..24].try_into().ok()?) as usize;
    let ids = &body[HEADER..];
    if ids.len() != count.checked_mul(32)? {
        return None;
    }
    Some(
        ids.chunks_exact(32)
            .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        index.add_and_save([b]).expect("save");
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
        std::io::Write::write_all(&mut torn, &[1, 2, 3]).expect("torn record");
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
        index.add_and_save([b]).expect("save");
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
}
