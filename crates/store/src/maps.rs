//! Block maps: `maps/<vm>/<point>/<disk>.map`, one per disk of a point, named with its digest
//! by the point record. A large map goes up in parts as it is encoded (and sealed, in an
//! encrypted vault) and is opened and decoded as it arrives, so that neither side holds its
//! encoding whole. The digest is BLAKE3 of the object as stored (sealed or not), so a copy is
//! checked by hashing it, without the key.

use blockvault_core::{BlockMap, DiskName, PointId, VmName};
use futures::TryStreamExt;
use object_store::WriteMultipart;
use object_store::path::Path;

use crate::checks;
use crate::error::backend;
use crate::store::Entries;
use crate::{Result, Store, layout};

/// Block maps whose encoding is larger than this go up in parts of this size as they are
/// encoded, never held whole (a map of a million blocks is 32 MB). S3 wants parts of at least
/// 5 MiB.
pub(crate) const MAP_PART_SIZE: usize = 8 << 20;

/// Bytes of a map's encoding made at a time while its parts fill.
const MAP_PIECE: usize = 1 << 20;

impl Store {
    /// Stores the block map of `disk` in `point`, sealed with the vault's codec (as encoded in
    /// a plain vault); returns the BLAKE3 digest of the stored object, for the point record. A
    /// large map is put in parts as it is encoded and sealed: the object appears whole when
    /// the upload completes, or not at all.
    pub async fn put_map(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        map: &BlockMap,
    ) -> Result<String> {
        let key = layout::map(vm, point, disk);
        let upload = if map.encoded_len() <= MAP_PART_SIZE as u64 {
            None
        } else {
            // None on a replicated store, which writes the same bytes twice: those maps are
            // encoded whole.
            self.backend().upload(&key).await?
        };
        let Some(upload) = upload else {
            let stored = self.codec.seal_object(key.as_ref(), map.encode());
            let digest = blake3::hash(&stored).to_hex().to_string();
            self.put(&key, stored.into()).await?;
            return Ok(digest);
        };
        // Parts of one size but the last (some S3-compatible stores require it), one at a
        // time: the next is made once the last is up, so at most a part is held.
        let mut parts = WriteMultipart::new_with_chunk_size(upload, MAP_PART_SIZE);
        let mut encoder = map.encoder();
        let mut sealer = self.codec.object_sealer(key.as_ref());
        let mut digest = blake3::Hasher::new();
        let mut piece = Vec::with_capacity(MAP_PIECE);
        let mut sealed = Vec::new();
        while !encoder.is_done() {
            if let Err(source) = parts.wait_for_capacity(1).await {
                // Best effort: a store that keeps parts of an unfinished upload drops them.
                let _ = parts.abort().await;
                return Err(backend("put", &key, source));
            }
            piece.clear();
            encoder.fill(&mut piece, MAP_PIECE);
            let stored: &[u8] = match &mut sealer {
                None => &piece,
                Some(sealer) => {
                    sealed.clear();
                    sealer.push(&piece, &mut sealed);
                    &sealed
                }
            };
            digest.update(stored);
            parts.write(stored);
        }
        if let Some(sealer) = sealer {
            // The last segment, sealed as such.
            sealed.clear();
            sealer.finish(&mut sealed);
            digest.update(&sealed);
            parts.write(&sealed);
        }
        // Aborts the upload itself when it fails.
        parts
            .finish()
            .await
            .map_err(|source| backend("put", &key, source))?;
        Ok(digest.finalize().to_hex().to_string())
    }

    /// Whether this store's copy of the block map of `disk` in `point` is there and hashes to
    /// `digest`: hashed as it is read, neither opened, decoded nor held. For a reader that holds the map
    /// with that digest already and only needs to know this copy is sound.
    pub async fn map_matches(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: &str,
    ) -> Result<bool> {
        let Some((_, mut pieces)) = self.here.get_pieces(&layout::map(vm, point, disk)).await?
        else {
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
            Err(problem) if problem.is_missing() || problem.is_corrupt() => match &self.replica {
                Some(replica) => {
                    let map = replica
                        .wrapper
                        .recover_map(vm, point, disk, digest, problem, &self.codec)
                        .await?;
                    Ok((map, true))
                }
                None => Err(problem),
            },
            Err(e) => Err(e),
        }
    }

    /// The block map as this store (not its secondary) holds it, checked, opened and decoded as
    /// its bytes arrive: the encoding is never held whole beside the map (at a million blocks each is
    /// 32 MB).
    pub(crate) async fn get_map_here(
        &self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<BlockMap> {
        checks::read_map(&*self.here, &self.codec, vm, point, disk, digest).await
    }

    /// Removes the block maps stored for `id` (of a deleted point, or of a backup that never
    /// committed).
    pub async fn delete_maps(&self, vm: &VmName, id: &PointId) -> Result<()> {
        let prefix = layout::maps_of(vm, id);
        let keys: Vec<Path> = self
            .here
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
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
}

/// A map too big to go up in one part: a 2 TiB disk at 4 MiB blocks, all data, 16 MiB of ids.
#[cfg(any(test, feature = "conformance"))]
pub(crate) fn large_map() -> BlockMap {
    use blockvault_core::{BlockSize, ChunkId};
    let bs = BlockSize::new(4 << 20).expect("4 MiB");
    let mut map = BlockMap::zeroed(2 << 40, bs, jiff::Timestamp::UNIX_EPOCH);
    for i in 0..map.len() {
        map.set(i, ChunkId::of(&(i as u64).to_le_bytes()));
    }
    map
}

#[cfg(test)]
mod tests {
    use blockvault_core::VmName;
    use jiff::Timestamp;

    use std::sync::Arc;

    use super::*;
    use crate::Error;
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
        let map = large_map();
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
            .put_map(&vm, &point, &disk, &large_map())
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
