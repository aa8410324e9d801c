//! The backend in a local directory: `LocalFileSystem` for most objects, and chunks kept the
//! directory's own way, written with batched directory fsyncs (`chunk_files.rs`) and read
//! from their files into reused buffers (`pool.rs`). Staging files a killed writer left are
//! found by walking the directory (`leftovers.rs`).

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blockvault_core::ChunkId;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ListResult, MultipartUpload, ObjectMeta, ObjectStore};

use crate::backend::{Backend, Pieces};
use crate::chunk_files::ChunkFiles;
use crate::error::{Error, Result};
use crate::layout;
use crate::leftovers::{self, Leftovers};
use crate::objects::ObjectBackend;
use crate::pool::BufferPool;

/// Free chunk read buffers a local store keeps for reuse: more than the reads a restore or
/// verify has in flight at once by default (8).
const READ_BUFFERS: usize = 16;

/// Vault objects in a local directory.
#[derive(Clone, Debug)]
pub(crate) struct DirBackend {
    /// Every object but the chunks, through `LocalFileSystem`.
    objects: ObjectBackend,
    /// The directory, canonical.
    root: PathBuf,
    /// The chunk files, written durably with their directories synced in batches
    /// ([`Backend::sync_chunks`]).
    chunk_files: Arc<ChunkFiles>,
    /// Chunks are read from their files straight into reused buffers.
    read_buffers: Arc<BufferPool>,
}

impl DirBackend {
    /// The objects in the existing directory `dir`.
    pub(crate) fn open(dir: &FsPath) -> Result<DirBackend> {
        let location = dir.display().to_string();
        let meta = std::fs::metadata(dir).map_err(|e| Error::NotAVault {
            location: location.clone(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "the directory does not exist".to_owned(),
                _ => e.to_string(),
            },
        })?;
        if !meta.is_dir() {
            return Err(Error::NotAVault {
                location,
                reason: "not a directory".to_owned(),
            });
        }
        let root = std::fs::canonicalize(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        // Every put is fsynced (file and directory) before it returns, so a local put is as
        // durable as an acknowledged S3 PUT; chunk files batch their directory fsyncs (see
        // `ChunkFiles`) and are durable at `sync_chunks`, which every commit passes. Measured
        // against one syncfs per commit: as fast on an idle file system, faster when other
        // writers share it (syncfs flushes their data too), and it never stalls the host's
        // VMs. Deleting the last object of a directory
        // removes the directory, so listings never show prefixes of deleted points.
        let objects = LocalFileSystem::new_with_prefix(&root)
            .map(|fs| fs.with_fsync(true).with_automatic_cleanup(true))
            .map_err(|error| Error::Backend {
                op: "open",
                key: location.clone(),
                error,
            })?;
        Ok(DirBackend {
            objects: ObjectBackend::new(Arc::new(objects), location),
            chunk_files: Arc::new(ChunkFiles::new(root.clone())),
            root,
            read_buffers: BufferPool::new(READ_BUFFERS),
        })
    }

    /// Object `key`, read from its file into a pooled buffer on a blocking thread (what
    /// `LocalFileSystem` does, less a new buffer for every object).
    async fn read_file(&self, key: &Path) -> Result<Option<Bytes>> {
        let path = self.root.join(key.as_ref());
        let pool = Arc::clone(&self.read_buffers);
        tokio::task::spawn_blocking(move || {
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(e)),
            };
            let len = file.metadata().map_err(io)?.len();
            let mut buf = pool.take();
            buf.reserve(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut buf).map_err(io)?;
            Ok(Some(pool.freeze(buf)))
        })
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
    }

    /// Runs `work` on the chunk files on a blocking thread; an error names `key` under the
    /// directory.
    async fn on_chunk_files(
        &self,
        key: &str,
        work: impl FnOnce(&ChunkFiles) -> std::io::Result<()> + Send + 'static,
    ) -> Result<()> {
        let files = Arc::clone(&self.chunk_files);
        let path = self.root.join(key);
        tokio::task::spawn_blocking(move || work(&files))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            .map_err(|source| Error::Io { path, source })
    }
}

#[async_trait::async_trait]
impl Backend for DirBackend {
    fn location(&self) -> &str {
        self.objects.location()
    }

    fn objects(&self) -> &Arc<dyn ObjectStore> {
        self.objects.objects()
    }

    fn with_multipart_threshold(&self, bytes: usize) -> Arc<dyn Backend> {
        Arc::new(DirBackend {
            objects: self.objects.with_threshold(bytes),
            ..self.clone()
        })
    }

    async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.objects.put(key, bytes).await
    }

    async fn upload(&self, key: &Path) -> Result<Option<Box<dyn MultipartUpload>>> {
        self.objects.upload(key).await
    }

    async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        self.objects.get(key).await
    }

    async fn get_pieces(&self, key: &Path) -> Result<Option<(u64, Pieces)>> {
        self.objects.get_pieces(key).await
    }

    async fn head(&self, key: &Path) -> Result<bool> {
        self.objects.head(key).await
    }

    async fn delete(&self, key: &Path) -> Result<()> {
        self.objects.delete(key).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.objects.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.objects.list_with_delimiter(prefix).await
    }

    async fn put_chunk(&self, id: &ChunkId, encoded: Bytes) -> Result<()> {
        let key = layout::chunk(id).to_string();
        let path = key.clone();
        self.on_chunk_files(&key, move |files| files.put(&path, &encoded))
            .await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        self.read_file(&layout::chunk(id)).await
    }

    /// A chunk found is synced with the next [`Backend::sync_chunks`]: another process may
    /// have put it moments ago.
    async fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        let key = layout::chunk(id);
        let found = self.objects.head(&key).await?;
        if found {
            self.chunk_files.found(key.as_ref());
        }
        Ok(found)
    }

    async fn sync_chunks(&self) -> Result<()> {
        self.on_chunk_files("", ChunkFiles::sync).await
    }

    async fn sync_every_chunk(&self) -> Result<()> {
        self.on_chunk_files("", |files| {
            files.sync_every_entry(layout::chunks_root().as_ref())
        })
        .await
    }

    fn syncs_chunks_in_batches(&self) -> bool {
        true
    }

    async fn remove_staging_leftovers(&self, older_than: Duration, count_only: bool) -> Leftovers {
        leftovers::remove(self.root.clone(), older_than, count_only).await
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::ChunkCodec;

    use super::*;

    #[tokio::test]
    async fn a_local_store_reads_chunks_from_their_files_through_reused_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirBackend::open(dir.path()).expect("store");
        let codec = ChunkCodec::plain();
        let blocks: Vec<Vec<u8>> = (0..5u8).map(|n| vec![n + 1; 64 << 10]).collect();
        for block in &blocks {
            let (id, encoded) = codec.encode_one(block).expect("encode");
            store.put_chunk(&id, encoded.into()).await.expect("put");
        }
        for block in &blocks {
            let got = store
                .get_chunk(&ChunkId::of(block))
                .await
                .expect("get")
                .expect("there");
            assert_eq!(
                got,
                codec.encode_one(block).expect("encode").1,
                "the stored bytes, whole"
            );
        }
        assert_eq!(
            store.read_buffers.free_buffers(),
            1,
            "one buffer carried all five reads, one after the other"
        );

        // A chunk file that cannot be read is an error, not a missing chunk.
        let id = ChunkId::of(&blocks[0]);
        let hex = id.to_hex();
        let path = dir.path().join("chunks").join(&hex[..2]).join(&hex);
        std::fs::remove_file(&path).expect("remove");
        assert!(store.get_chunk(&id).await.expect("missing").is_none());
        std::fs::create_dir(&path).expect("a directory in its place");
        let err = store.get_chunk(&id).await.expect_err("unreadable");
        assert!(!err.is_missing(), "{err}");
    }
}
