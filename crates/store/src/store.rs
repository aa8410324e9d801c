use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use blockvault_core::{
    BlockMap, ChunkDecoder, ChunkId, DiskName, MapDecoder, PointId, RecoveryPoint,
    SoftDeleteMarker, VaultConfig, VmName,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::chunk_files::ChunkFiles;
use crate::pool::BufferPool;
use crate::replica::Replica;
use crate::{Error, Result, cpu, layout};

/// Objects larger than this go up in parts (S3 caps a single PUT at 5 GB and retries a failed
/// part, not the whole object). Block maps pass it for disks of about 8 TiB and more.
const MULTIPART_THRESHOLD: usize = 64 << 20;

/// Size of each part of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART_SIZE: usize = 16 << 20;

/// Block maps whose encoding is larger than this go up in parts of this size as they are
/// encoded, never held whole (a map of a million blocks is 32 MB). S3 wants parts of at least
/// 5 MiB.
pub(crate) const MAP_PART_SIZE: usize = 8 << 20;

/// Bytes of a map's encoding made at a time while its parts fill.
const MAP_PIECE: usize = 1 << 20;

/// Free chunk read buffers a local store keeps for reuse: more than the reads a restore or
/// verify has in flight at once by default (8).
const READ_BUFFERS: usize = 16;

/// Vault objects (chunks, block maps, recovery points, the vault config) over any
/// [`ObjectStore`]: a local directory, S3, or memory for tests.
///
/// Writes are whole-object `PUT`s, which every backend makes atomic (a reader sees the old
/// object, the new one, or none, never a partial one) and durable before they return (object
/// stores acknowledge a PUT once it is stored; a local directory fsyncs the file and its
/// directory), but for a local directory's chunks, whose names become durable in batches
/// ([`Store::put_chunk`], [`Store::sync_chunks`]). Nothing relies on conditional writes.
///
/// A store may be *replicated* ([`Store::replicated`]): every write then goes to a secondary
/// store too, and reads fall back to it (see the crate docs).
#[derive(Clone, Debug)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    location: String,
    multipart_threshold: usize,
    /// The secondary of a replicated vault; `None` for a single store (the fast path).
    pub(crate) replica: Option<Arc<Replica>>,
    /// The directory of a local store ([`Store::local`]): chunks are read from their files
    /// straight into reused buffers.
    pub(crate) dir: Option<PathBuf>,
    /// The chunk files of a local store, written durably with their directories synced in
    /// batches ([`Store::sync_chunks`]).
    chunk_files: Option<Arc<ChunkFiles>>,
    pub(crate) read_buffers: Arc<BufferPool>,
}

impl Store {
    /// A store in the existing directory `dir`.
    pub fn local(dir: impl AsRef<FsPath>) -> Result<Store> {
        let dir = dir.as_ref();
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
            .map_err(|source| Error::Backend {
                op: "open",
                key: location.clone(),
                source,
            })?;
        Ok(Store {
            chunk_files: Some(Arc::new(ChunkFiles::new(root.clone()))),
            dir: Some(root),
            ..Store::new(Arc::new(objects), location)
        })
    }

    /// An empty store in memory (unit tests).
    pub fn in_memory() -> Store {
        Store::new(Arc::new(InMemory::new()), "memory")
    }

    /// A store over any object store; `location` names it in messages.
    pub fn new(objects: Arc<dyn ObjectStore>, location: impl Into<String>) -> Store {
        Store {
            objects,
            location: location.into(),
            multipart_threshold: MULTIPART_THRESHOLD,
            replica: None,
            dir: None,
            chunk_files: None,
            read_buffers: BufferPool::new(READ_BUFFERS),
        }
    }

    /// Uploads objects larger than `bytes` in parts (tests lower it to exercise multipart).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Store {
        self.multipart_threshold = bytes;
        self
    }

    /// Where the store lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The object store underneath, for wrappers and tests.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    // ---- the vault config -------------------------------------------------------------------

    /// Makes this location a vault by writing its config. Refuses a location that already holds
    /// a vault or any other object.
    ///
    /// On a replicated store the config goes to the primary only: the secondary holds its own
    /// (see [`Store::init_replicated`]).
    pub async fn init(&self, config: &VaultConfig) -> Result<()> {
        self.check_empty().await?;
        self.write_config(config).await
    }

    /// Refuses a location that already holds a vault or any other object: what [`Store::init`]
    /// checks before it writes.
    pub async fn check_empty(&self) -> Result<()> {
        match self.config().await {
            Ok(_) => {
                return Err(Error::AlreadyAVault {
                    location: self.location.clone(),
                });
            }
            Err(Error::NotAVault { .. }) => {}
            Err(other) => return Err(other),
        }
        let mut any = self.objects.list(None);
        if any.next().await.is_some() {
            return Err(Error::NotEmpty {
                location: self.location.clone(),
            });
        }
        Ok(())
    }

    /// Replaces the vault config of this store (the primary only, on a replicated store). For
    /// changes the caller has checked are allowed, such as the redundancy of an empty vault.
    pub async fn write_config(&self, config: &VaultConfig) -> Result<()> {
        self.put_here(&layout::config(), config.encode().into())
            .await
    }

    /// The vault config; [`Error::NotAVault`] when this location is not a vault.
    pub async fn config(&self) -> Result<VaultConfig> {
        let key = layout::config();
        let bytes = match self.get(&key).await? {
            Some(bytes) => bytes,
            None if self.bucket_missing().await => {
                return Err(Error::BucketMissing {
                    location: self.location.clone(),
                });
            }
            None => {
                return Err(Error::NotAVault {
                    location: self.location.clone(),
                    reason: "it has no vault.config".to_owned(),
                });
            }
        };
        VaultConfig::decode(&bytes).map_err(|source| Error::ConfigCorrupt {
            location: self.location.clone(),
            source,
        })
    }

    /// Whether listing says the bucket itself does not exist (an S3 `GET` of a missing object
    /// and of an object in a missing bucket both answer 404).
    async fn bucket_missing(&self) -> bool {
        match self.objects.list_with_delimiter(None).await {
            Err(object_store::Error::NotFound { .. }) => true,
            Err(other) => other.to_string().contains("NoSuchBucket"),
            Ok(_) => false,
        }
    }

    // ---- chunks -----------------------------------------------------------------------------

    /// Whether the vault holds chunk `id` (one `HEAD`).
    ///
    /// On a replicated store, whether both stores hold it (one `HEAD` each): a chunk only the
    /// primary holds is uploaded again, so the secondary gets it too.
    ///
    /// In a local directory, a chunk found is synced with this store's next
    /// [`Store::sync_chunks`] (another process may have put it moments ago).
    pub async fn has_chunk(&self, id: &ChunkId) -> Result<bool> {
        if let Some(replica) = &self.replica {
            return replica.has_chunk(self, id).await;
        }
        let found = self.has_chunk_here(id).await?;
        if found && let Some(files) = &self.chunk_files {
            files.found(layout::chunk(id).as_ref());
        }
        Ok(found)
    }

    pub(crate) async fn has_chunk_here(&self, id: &ChunkId) -> Result<bool> {
        let key = layout::chunk(id);
        match self.objects.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(backend("head", &key, source)),
        }
    }

    /// Stores an encoded chunk under `id`. Content addressing makes a repeated put harmless, so
    /// callers decide what to skip; this never reads first.
    ///
    /// When it returns the chunk is readable, and durable on every backend but a local
    /// directory, where its file is but its name becomes durable at the next
    /// [`Store::sync_chunks`]: call that before recording the chunk as stored anywhere that
    /// outlives the process (a point record does it itself).
    pub async fn put_chunk(&self, id: &ChunkId, encoded: Bytes) -> Result<()> {
        let key = layout::chunk(id);
        match (&self.chunk_files, &self.replica) {
            (Some(_), None) => {
                let path = key.to_string();
                self.on_chunk_files(key.as_ref(), move |files| files.put(&path, &encoded))
                    .await
            }
            _ => self.put(&key, encoded).await,
        }
    }

    /// Makes every chunk put so far durable under its name (a local directory's batched
    /// directory fsyncs; nothing to do elsewhere).
    pub async fn sync_chunks(&self) -> Result<()> {
        self.on_chunk_files("", ChunkFiles::sync).await
    }

    /// Makes every chunk in the store durable under its name (after a listing that may have
    /// seen chunks another process has not synced yet; nothing to do but in a directory).
    pub async fn sync_every_chunk(&self) -> Result<()> {
        self.on_chunk_files("", |files| {
            files.sync_every_entry(layout::chunks_root().as_ref())
        })
        .await
    }

    /// Runs `work` on this local store's chunk files on a blocking thread; an error names
    /// `key` under the store's directory. Nothing to do for a store without chunk files.
    async fn on_chunk_files(
        &self,
        key: &str,
        work: impl FnOnce(&ChunkFiles) -> std::io::Result<()> + Send + 'static,
    ) -> Result<()> {
        let (Some(files), Some(dir)) = (&self.chunk_files, &self.dir) else {
            return Ok(());
        };
        let files = Arc::clone(files);
        tokio::task::spawn_blocking(move || work(&files))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            .map_err(|source| Error::Io {
                path: dir.join(key),
                source,
            })
    }

    /// Whether chunk puts become durable only at [`Store::sync_chunks`] (a local directory),
    /// so that callers record landed chunks in batches.
    pub fn syncs_chunks_in_batches(&self) -> bool {
        self.chunk_files.is_some() && self.replica.is_none()
    }

    /// The encoded bytes of chunk `id`, unverified; see [`Store::read_chunk`]. On a replicated
    /// store a chunk missing from the primary is read from the secondary, verified, and put
    /// back on the primary; a caller that finds the bytes corrupt asks
    /// [`Store::chunk_from_replica`].
    pub async fn get_chunk(&self, id: &ChunkId) -> Result<Bytes> {
        let key = layout::chunk(id);
        let found = match &self.dir {
            Some(dir) => self.read_file(dir, &key).await?,
            None => self.get(&key).await?,
        };
        match found {
            Some(bytes) => Ok(bytes),
            None if self.replica.is_some() => {
                self.chunk_from_replica(id, Error::ChunkMissing { id: *id })
                    .await
            }
            None => Err(Error::ChunkMissing { id: *id }),
        }
    }

    /// Chunk `id` decoded and verified against its id (decompressed and re-hashed on the rayon
    /// pool).
    ///
    /// On a replicated store a chunk missing or corrupt on the primary is read from the
    /// secondary (and healed on the primary).
    pub async fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let encoded = self.get_chunk(id).await?;
        match decode_chunk(encoded, *id).await {
            Err(problem @ Error::ChunkCorrupt { .. }) if self.replica.is_some() => {
                let good = self.chunk_from_replica(id, problem).await?;
                decode_chunk(good, *id).await
            }
            other => other,
        }
    }

    /// Every chunk id in the vault (streamed from a listing; objects that are not chunks are
    /// skipped).
    pub fn list_chunks(&self) -> impl futures::Stream<Item = Result<ChunkId>> + '_ {
        let root = layout::chunks_root();
        self.objects
            .list(Some(&root))
            .map_err(move |source| backend("list", &layout::chunks_root(), source))
            .try_filter_map(|meta| async move {
                Ok(meta
                    .location
                    .filename()
                    .and_then(|name| name.parse::<ChunkId>().ok()))
            })
    }

    // ---- block maps -------------------------------------------------------------------------

    /// Stores the block map of `disk` in `point`; returns the BLAKE3 digest of its encoding, for
    /// the point record. A large map is put in parts as it is encoded: the object appears whole
    /// when the upload completes, or not at all.
    pub async fn put_map(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        map: &BlockMap,
    ) -> Result<String> {
        let key = layout::map(vm, point, disk);
        if map.encoded_len() <= MAP_PART_SIZE as u64 || self.replica.is_some() {
            // A replicated store writes the same bytes twice: those maps are encoded whole.
            let encoded = map.encode();
            let digest = blake3::hash(&encoded).to_hex().to_string();
            self.put(&key, encoded.into()).await?;
            return Ok(digest);
        }
        let upload = self
            .objects
            .put_multipart(&key)
            .await
            .map_err(|source| backend("put", &key, source))?;
        // Parts of one size but the last (some S3-compatible stores require it), one at a
        // time: the next is made once the last is up, so at most a part is held.
        let mut parts = WriteMultipart::new_with_chunk_size(upload, MAP_PART_SIZE);
        let mut encoder = map.encoder();
        let mut digest = blake3::Hasher::new();
        let mut piece = Vec::with_capacity(MAP_PIECE);
        while !encoder.is_done() {
            if let Err(source) = parts.wait_for_capacity(1).await {
                // Best effort: a store that keeps parts of an unfinished upload drops them.
                let _ = parts.abort().await;
                return Err(backend("put", &key, source));
            }
            piece.clear();
            encoder.fill(&mut piece, MAP_PIECE);
            digest.update(&piece);
            parts.write(&piece);
        }
        // Aborts the upload itself when it fails.
        parts
            .finish()
            .await
            .map_err(|source| backend("put", &key, source))?;
        Ok(digest.finalize().to_hex().to_string())
    }

    /// Whether this store's copy of the block map of `disk` in `point` is there and hashes to
    /// `digest`: hashed as it is read, neither decoded nor held. For a reader that holds the map
    /// with that digest already and only needs to know this copy is sound.
    pub async fn map_matches(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: &str,
    ) -> Result<bool> {
        let Some((_, mut pieces)) = self.get_pieces(&layout::map(vm, point, disk)).await? else {
            return Ok(false);
        };
        let mut hasher = blake3::Hasher::new();
        while let Some(piece) = pieces.try_next().await? {
            hasher.update(&piece);
        }
        Ok(hasher.finalize().to_hex().as_str() == digest)
    }

    /// The block map of `disk` in `point`, checked against `digest` (from the point record) when
    /// one is given.
    ///
    /// On a replicated store a map missing or failing these checks on the primary is read from
    /// the secondary, checked the same way, and healed on the primary.
    pub async fn get_map(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<BlockMap> {
        Ok(self.get_map_reporting(vm, point, disk, digest).await?.0)
    }

    /// [`Store::get_map`], also saying whether the map came from the secondary (true) because
    /// the primary's copy was missing or bad.
    pub async fn get_map_reporting(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<(BlockMap, bool)> {
        match self.get_map_here(vm, point, disk, digest).await {
            Ok(map) => Ok((map, false)),
            Err(problem)
                if self.replica.is_some() && (problem.is_missing() || problem.is_corrupt()) =>
            {
                let map = crate::replica::map_from_replica(self, vm, point, disk, digest, problem)
                    .await?;
                Ok((map, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The block map as this store (not its secondary) holds it, checked, decoded as its bytes
    /// arrive: the encoding is never held whole beside the map (at a million blocks each is
    /// 32 MB).
    pub(crate) async fn get_map_here(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<BlockMap> {
        let (size, mut pieces) = self
            .get_pieces(&layout::map(vm, point, disk))
            .await?
            .ok_or_else(|| map_missing(vm, point, disk))?;
        let mut reader = MapReader::new(size);
        while let Some(piece) = pieces.try_next().await? {
            reader.feed(&piece);
        }
        reader.finish(vm, point, disk, digest)
    }

    /// [`Store::get_map_here`] with the map's bytes as well, to heal another copy with.
    pub(crate) async fn get_map_bytes_here(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<(BlockMap, Bytes)> {
        let bytes = self
            .get(&layout::map(vm, point, disk))
            .await?
            .ok_or_else(|| map_missing(vm, point, disk))?;
        let mut reader = MapReader::new(bytes.len() as u64);
        reader.feed(&bytes);
        Ok((reader.finish(vm, point, disk, digest)?, bytes))
    }

    // ---- recovery points --------------------------------------------------------------------

    /// Writes a point record: the commit of a backup. Write it only after every chunk and map it
    /// names has been put: puts are durable when they return, so the record never names
    /// something a crash could lose.
    ///
    /// On a replicated store the record goes to the secondary first, then to the primary
    /// (whose listing is what says a point exists); if the primary refuses it, the secondary's
    /// copy is removed again, so a failed commit commits nowhere.
    pub async fn put_point(&self, point: &RecoveryPoint) -> Result<()> {
        // The commit: everything the point names is durable first.
        self.sync_chunks().await?;
        let key = layout::point(&point.vm, &point.id);
        let bytes: Bytes = point.encode().into();
        match &self.replica {
            None => self.put_here(&key, bytes).await,
            Some(replica) => replica.put_commit(self, &key, bytes).await,
        }
    }

    /// A point record; on a replicated store one corrupt on the primary is read from the
    /// secondary and healed on the primary. A record missing from the primary is
    /// [`Error::PointMissing`] whatever the secondary holds: the primary says which points
    /// exist (a commit lands on the secondary first).
    pub async fn get_point(&self, vm: &VmName, id: &PointId) -> Result<RecoveryPoint> {
        match self.get_point_here(vm, id).await {
            Ok((point, _)) => Ok(point),
            Err(problem) if self.replica.is_some() && problem.is_corrupt() => {
                crate::replica::point_from_replica(self, vm, id, problem).await
            }
            Err(e) => Err(e),
        }
    }

    /// The point record as this store (not its secondary) holds it, with its bytes.
    pub(crate) async fn get_point_here(
        &self,
        vm: &VmName,
        id: &PointId,
    ) -> Result<(RecoveryPoint, Bytes)> {
        let bytes = self
            .get(&layout::point(vm, id))
            .await?
            .ok_or_else(|| Error::PointMissing {
                vm: vm.clone(),
                point: id.clone(),
            })?;
        let corrupt = |source| Error::PointCorrupt {
            vm: vm.clone(),
            point: id.clone(),
            source,
        };
        let point = RecoveryPoint::decode(&bytes).map_err(corrupt)?;
        // A record under another point's key (copied or renamed by hand) would pass for that
        // point: it names another point's maps.
        if &point.vm != vm || &point.id != id {
            return Err(corrupt(blockvault_core::Error::Malformed {
                what: "recovery point",
                reason: format!("the record is of point {} of VM {}", point.id, point.vm),
            }));
        }
        Ok((point, bytes))
    }

    /// The VMs that have at least one point.
    pub async fn list_vms(&self) -> Result<Vec<VmName>> {
        self.list_names(&layout::points_root(), Entries::Prefixes)
            .await
    }

    /// The ids of the committed points of `vm`, oldest first.
    pub async fn list_point_ids(&self, vm: &VmName) -> Result<Vec<PointId>> {
        self.list_names(&layout::points_of(vm), Entries::Objects)
            .await
    }

    // ---- soft delete ------------------------------------------------------------------------

    /// Marks the points of `marker.vm` as soft-deleted (`deleted/<vm>`), replacing any marker.
    pub async fn put_soft_delete(&self, marker: &SoftDeleteMarker) -> Result<()> {
        self.put(&layout::soft_delete(&marker.vm), marker.encode().into())
            .await
    }

    /// The soft-delete marker of `vm`: `None` when its points are not soft-deleted.
    pub async fn soft_delete(&self, vm: &VmName) -> Result<Option<SoftDeleteMarker>> {
        let Some(bytes) = self.get(&layout::soft_delete(vm)).await? else {
            return Ok(None);
        };
        SoftDeleteMarker::decode(&bytes)
            .map(Some)
            .map_err(|source| Error::SoftDeleteCorrupt {
                vm: vm.clone(),
                source,
            })
    }

    /// Removes the soft-delete marker of `vm` (undelete, or the end of a purge); no marker is
    /// not an error.
    pub async fn remove_soft_delete(&self, vm: &VmName) -> Result<()> {
        self.delete(&layout::soft_delete(vm)).await
    }

    // ---- deletion ---------------------------------------------------------------------------

    /// Removes a point: its record first (so the point stops existing at once), then its maps.
    /// A crash in between leaves orphan maps, which [`Store::list_map_point_ids`] finds.
    /// On a replicated store the record goes from the secondary first (see `commit.rs`).
    pub async fn delete_point(&self, vm: &VmName, id: &PointId) -> Result<()> {
        self.delete_record(vm, id).await?;
        self.delete_maps(vm, id).await
    }

    /// Removes the block maps stored for `id` (of a deleted point, or of a backup that never
    /// committed).
    pub async fn delete_maps(&self, vm: &VmName, id: &PointId) -> Result<()> {
        let prefix = layout::maps_of(vm, id);
        let keys: Vec<Path> = self
            .objects
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|source| backend("list", &prefix, source))?;
        for key in keys {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// The ids under which `vm` has block maps: its points, and backups that wrote maps but
    /// never committed.
    pub async fn list_map_point_ids(&self, vm: &VmName) -> Result<Vec<PointId>> {
        self.list_names(&layout::maps_of_vm(vm), Entries::Prefixes)
            .await
    }

    /// Removes chunk `id`. Only garbage collection may call this, and only for a chunk no live
    /// map names (see the collector for how that is decided safely).
    pub async fn delete_chunk(&self, id: &ChunkId) -> Result<()> {
        self.delete(&layout::chunk(id)).await
    }

    // ---- plumbing ---------------------------------------------------------------------------

    /// The last path segments of the objects or of the sub-prefixes right under `prefix` that
    /// parse as `T`, sorted (others are skipped).
    pub(crate) async fn list_names<T: std::str::FromStr + Ord>(
        &self,
        prefix: &Path,
        entries: Entries,
    ) -> Result<Vec<T>> {
        let listing = self
            .objects
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|source| backend("list", prefix, source))?;
        let paths: Vec<&Path> = match entries {
            Entries::Objects => listing.objects.iter().map(|o| &o.location).collect(),
            Entries::Prefixes => listing.common_prefixes.iter().collect(),
        };
        let mut names: Vec<T> = paths
            .into_iter()
            .filter_map(|p| p.filename().and_then(|n| n.parse().ok()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Puts an object: into this store, and into the secondary too when replicated.
    pub(crate) async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        match &self.replica {
            None => self.put_here(key, bytes).await,
            Some(replica) => replica.put(self, key, bytes).await,
        }
    }

    /// Puts an object into this store only.
    pub(crate) async fn put_here(&self, key: &Path, bytes: Bytes) -> Result<()> {
        if bytes.len() > self.multipart_threshold {
            return self.put_in_parts(key, bytes).await;
        }
        self.objects
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| backend("put", key, source))
    }

    /// A multipart upload: the object appears whole when it completes, or not at all (a failed
    /// upload is aborted so no parts linger).
    async fn put_in_parts(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let upload = self
            .objects
            .put_multipart(key)
            .await
            .map_err(|source| backend("put", key, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(bytes);
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(source) => Err(backend("put", key, source)),
        }
    }

    /// Deletes one object, from the secondary too when replicated; an object that is already
    /// gone is not an error.
    pub(crate) async fn delete(&self, key: &Path) -> Result<()> {
        match &self.replica {
            None => self.delete_here(key).await,
            Some(replica) => replica.delete(self, key).await,
        }
    }

    pub(crate) async fn delete_here(&self, key: &Path) -> Result<()> {
        match self.objects.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(backend("delete", key, source)),
        }
    }

    /// Object `key` of a local store, read from its file into a pooled buffer on a blocking
    /// thread (what `LocalFileSystem` does, less a new buffer for every object).
    async fn read_file(&self, dir: &FsPath, key: &Path) -> Result<Option<Bytes>> {
        let path = dir.join(key.as_ref());
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

    pub(crate) async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        let result = match self.objects.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(backend("get", key, source)),
        };
        result
            .bytes()
            .await
            .map(Some)
            .map_err(|source| backend("get", key, source))
    }

    /// Object `key` as the backend delivers it, piece by piece, with its size; `None` when
    /// there is no such object. For objects read once and not kept whole.
    pub(crate) async fn get_pieces(
        &self,
        key: &Path,
    ) -> Result<Option<(u64, BoxStream<'static, Result<Bytes>>)>> {
        let result = match self.objects.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(backend("get", key, source)),
        };
        let size = result.meta.size;
        let key = key.clone();
        let pieces = result
            .into_stream()
            .map_err(move |source| backend("get", &key, source))
            .boxed();
        Ok(Some((size, pieces)))
    }
}

fn map_missing(vm: &VmName, point: &PointId, disk: &DiskName) -> Error {
    Error::MapMissing {
        vm: vm.clone(),
        point: point.clone(),
        disk: disk.clone(),
    }
}

/// A block map read as it arrives: decoded, and hashed for the point record's digest.
struct MapReader {
    decoder: MapDecoder,
    digest: blake3::Hasher,
}

impl MapReader {
    fn new(size: u64) -> MapReader {
        MapReader {
            decoder: MapDecoder::new(Some(size)),
            digest: blake3::Hasher::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        self.decoder.feed(bytes);
    }

    /// The map, if it hashes to `digest` (when given) and decodes. A digest that does not
    /// match is named before anything the decode found: it says the whole object is not the
    /// one the point record wrote.
    fn finish(
        self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<BlockMap> {
        let corrupt = |reason: String| Error::MapCorrupt {
            vm: vm.clone(),
            point: point.clone(),
            disk: disk.clone(),
            reason,
        };
        if let Some(expected) = digest {
            let actual = self.digest.finalize().to_hex();
            if actual.as_str() != expected {
                return Err(corrupt(format!(
                    "its digest {} does not match the point record's {}",
                    &actual[..16],
                    &expected[..expected.len().min(16)]
                )));
            }
        }
        self.decoder.finish().map_err(|e| corrupt(e.to_string()))
    }
}

/// Decodes chunk `id` and checks it against its id, on the rayon pool.
pub(crate) async fn decode_chunk(encoded: Bytes, id: ChunkId) -> Result<Vec<u8>> {
    cpu::run(move || {
        let mut out = Vec::new();
        ChunkDecoder::new()
            .and_then(|mut d| d.decode_verified(&encoded, id, &mut out))
            .map_err(|source| Error::ChunkCorrupt { id, source })?;
        Ok(out)
    })
    .await
}

pub(crate) fn backend(op: &'static str, key: &Path, source: object_store::Error) -> Error {
    Error::Backend {
        op,
        key: key.to_string(),
        source,
    }
}

/// What [`Store::list_names`] lists under a prefix.
pub(crate) enum Entries {
    Objects,
    Prefixes,
}

#[cfg(test)]
mod tests {
    use blockvault_core::VmName;
    use jiff::Timestamp;

    use super::*;
    use crate::testing::ProbedStore;

    /// A large map goes up in parts of one size but the last (some S3-compatible stores
    /// refuse others), and its digest is the whole encoding's.
    #[tokio::test]
    async fn a_large_map_goes_up_in_equal_parts() {
        let probe = Arc::new(ProbedStore::counting("maps/"));
        let store = Store::new(probe.clone(), "probed");
        let vm = VmName::new("vm").expect("name");
        let point = PointId::generate(Timestamp::UNIX_EPOCH, b"parts");
        let disk = DiskName::new("disk.img").expect("name");
        let map = crate::conformance::large_map();
        let digest = store.put_map(&vm, &point, &disk, &map).await.expect("put");
        let whole = map.encode();
        assert_eq!(digest, blake3::hash(&whole).to_hex().as_str());
        let parts = probe.part_sizes();
        let (last, full) = parts.split_last().expect("parts");
        assert!(full.len() >= 2, "{parts:?}");
        assert!(full.iter().all(|&p| p == MAP_PART_SIZE), "{parts:?}");
        assert!(*last <= MAP_PART_SIZE && parts.iter().sum::<usize>() == whole.len());
        assert_eq!(probe.puts(), 0, "no whole-object put");
        assert!(
            store
                .get_map(&vm, &point, &disk, Some(&digest))
                .await
                .expect("get")
                == map
        );
    }

    /// A map going up in parts whose upload fails after its first part: the error names the
    /// map, the upload is aborted, and no map, whole or partial, is left for a reader.
    #[tokio::test]
    async fn a_map_upload_failing_midway_leaves_no_map() {
        let probe = Arc::new(ProbedStore::failing_parts_after(1));
        let store = Store::new(probe.clone(), "probed");
        let vm = VmName::new("vm").expect("name");
        let point = PointId::generate(Timestamp::UNIX_EPOCH, b"failing");
        let disk = DiskName::new("disk.img").expect("name");
        let err = store
            .put_map(&vm, &point, &disk, &crate::conformance::large_map())
            .await
            .expect_err("the second part fails");
        assert!(
            matches!(&err, Error::Backend { op: "put", key, .. } if key.ends_with("disk.img.map")),
            "{err}"
        );
        assert!(err.to_string().contains("refused the part"), "{err}");
        assert!(probe.aborted(), "the upload is aborted");
        let err = store
            .get_map(&vm, &point, &disk, None)
            .await
            .expect_err("no map");
        assert!(matches!(err, Error::MapMissing { .. }), "{err}");
    }
}
