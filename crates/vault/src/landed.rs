//! The chunks a writer (backup, early send, transfer) put in a vault, recorded once durable.
//!
//! Recorded means journaled, when the vault has a chunk index on this host, and collected for
//! the index. A chunk's name in a local directory becomes durable only at the store's next
//! [`Store::sync_chunks`], so there landed chunks wait in a batch and are recorded after that
//! sync, at most [`SYNC_EVERY`] later and at [`Landed::finish`]: a journal or index that names
//! a chunk whose name a host crash could still take would make later backups skip it. Where
//! every put is durable when it returns (S3), each chunk is recorded as it lands.
//!
//! A writer killed between syncs leaves chunks in the directory that its journal does not
//! name. The next writer finds the journal left behind and asks the store (a `stat`) about
//! each chunk its index lacks ([`ChunkIndex::may_lack_landed`](crate::ChunkIndex)), so a retry
//! still writes only what is missing; a chunk found that way is synced before its commit.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use blockvault_core::{ChunkId, ChunkSet};
use blockvault_store::Store;

use crate::{Journal, Result};

/// How long landed chunks of a local directory wait for their directory sync. The journal
/// only spares the retry of a killed backup from writing them again, so a few seconds of
/// them lost cost little, while each sync fsyncs up to 257 directories.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(5);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Landed {
    store: Store,
    journal: Option<Journal>,
    batches: bool,
    lists: Mutex<Lists>,
    /// One sync at a time: a sync that found its directories taken by another still running
    /// must not record its batch before that other one is done.
    syncing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Lists {
    unsynced: Vec<ChunkId>,
    recorded: Vec<ChunkId>,
    synced_at: Instant,
}

impl Landed {
    pub(crate) fn new(store: &Store, journal: Option<Journal>) -> Landed {
        Landed {
            store: store.clone(),
            journal,
            batches: store.syncs_chunks_in_batches(),
            lists: Mutex::new(Lists {
                unsynced: Vec::new(),
                recorded: Vec::new(),
                synced_at: Instant::now(),
            }),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    /// Chunk `id` was put: recorded now, or with its batch (see the module docs).
    pub(crate) async fn put(&self, id: ChunkId) -> Result<()> {
        if !self.batches {
            return self.record(vec![id]);
        }
        let due = {
            let mut lists = self.lists();
            lists.unsynced.push(id);
            lists.synced_at.elapsed() >= SYNC_EVERY
        };
        if due { self.sync().await } else { Ok(()) }
    }

    /// Chunks another writer of the same job recorded already (the early send): returned
    /// with this one's, not synced or journaled again.
    pub(crate) fn recorded_elsewhere(&self, ids: impl IntoIterator<Item = ChunkId>) {
        self.lists().recorded.extend(ids);
    }

    /// Makes every chunk put so far durable, then records it.
    pub(crate) async fn sync(&self) -> Result<()> {
        let _one = self.syncing.lock().await;
        let batch = {
            let mut lists = self.lists();
            lists.synced_at = Instant::now();
            std::mem::take(&mut lists.unsynced)
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.sync_chunks().await {
            // Not durable, so not recorded: a retry sends them again.
            return Err(e.into());
        }
        self.record(batch)
    }

    /// Syncs what is left; returns every chunk recorded, with the sync's outcome.
    pub(crate) async fn finish(self) -> (ChunkSet, Result<()>) {
        let synced = self.sync().await;
        let lists = self
            .lists
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        (ChunkSet::from_vec(lists.recorded), synced)
    }

    fn record(&self, ids: Vec<ChunkId>) -> Result<()> {
        if let Some(journal) = &self.journal {
            journal.record_all(&ids)?;
        }
        self.lists().recorded.extend(ids);
        Ok(())
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkIndex;

    /// The ids in the journal beside index `path`.
    fn journaled(path: &std::path::Path) -> Vec<ChunkId> {
        std::fs::read(path.with_extension("log"))
            .unwrap_or_default()
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok().map(ChunkId::from_bytes))
            .collect()
    }

    /// A `Landed` for `store` whose journal lies in `dir`; returns the index path too.
    async fn journaling(store: &Store, dir: &std::path::Path) -> (Landed, std::path::PathBuf) {
        let path = dir.join("state/chunks.idx");
        let index = ChunkIndex::load_or_rebuild(store, &path, None)
            .await
            .expect("index");
        (
            Landed::new(store, Some(index.journal().expect("journal"))),
            path,
        )
    }

    async fn put(store: &Store, landed: &Landed, name: &[u8]) -> ChunkId {
        let id = ChunkId::of(name);
        store
            .put_chunk(&id, name.to_vec().into())
            .await
            .expect("put");
        landed.put(id).await.expect("landed");
        id
    }

    #[tokio::test]
    async fn a_directory_store_records_landed_chunks_only_after_their_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::local(dir.path()).expect("store");
        let (landed, path) = journaling(&store, dir.path()).await;
        let a = put(&store, &landed, b"a").await;
        let b = put(&store, &landed, b"b").await;
        // Their names are not durable yet, so nothing outside this process may name them.
        assert!(journaled(&path).is_empty());
        let (recorded, synced) = landed.finish().await;
        synced.expect("sync");
        assert_eq!(recorded, ChunkSet::from_vec(vec![a, b]));
        let mut journal = journaled(&path);
        journal.sort();
        assert_eq!(journal, recorded.as_slice());
    }

    #[tokio::test]
    async fn a_store_durable_on_every_put_records_each_chunk_as_it_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_memory();
        let (landed, path) = journaling(&store, dir.path()).await;
        let a = put(&store, &landed, b"a").await;
        assert_eq!(journaled(&path), [a]);
        let (recorded, synced) = landed.finish().await;
        synced.expect("sync");
        assert_eq!(recorded, ChunkSet::from_vec(vec![a]));
    }

    #[tokio::test]
    async fn chunks_the_early_send_recorded_are_returned_but_not_journaled_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::local(dir.path()).expect("store");
        let (landed, path) = journaling(&store, dir.path()).await;
        let early = ChunkId::of(b"early");
        landed.recorded_elsewhere([early]);
        let own = put(&store, &landed, b"own").await;
        let (recorded, synced) = landed.finish().await;
        synced.expect("sync");
        assert_eq!(recorded, ChunkSet::from_vec(vec![early, own]));
        assert_eq!(journaled(&path), [own], "the early send journaled its own");
    }
}
