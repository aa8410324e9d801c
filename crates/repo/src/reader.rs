//! The point reader: random access over a point's disks, every block verified against its id.
//!
//! A [`PointReader`] holds a point's block maps (each checked against the digest its record
//! names, as it is read) and answers [`PointReader::read_at`] for any byte range of any disk:
//! zero blocks read as zeros without a fetch; a stored block is fetched, decoded and hashed on
//! the CPU bridge, and must hash to its id and have the length its map says. On a replicated
//! repository a chunk whose primary copy is corrupt is read from the secondary (verified too)
//! and healed on the primary. The last few blocks read are kept decoded ([`CACHED_BLOCKS`]), so
//! small reads that walk a block (a file system's, an NBD client's) fetch it once.
//!
//! The restores stream whole disks through the same verified path, without the cache (each
//! block is read once there, and written from the decoder's buffer with no copy).

use std::sync::{Arc, Mutex, PoisonError};

use blockvault_core::{BlockMap, ChunkCodec, ChunkId, DiskName, RecoveryPoint};
use blockvault_store::{Store, cpu};
use bytes::Bytes;

use crate::{Error, Repository, Result};

/// How many decoded blocks a reader keeps for [`PointReader::read_at`].
pub const CACHED_BLOCKS: usize = 8;

/// Random, verified access over one point (see the module docs).
#[derive(Debug)]
pub struct PointReader {
    store: Store,
    point: RecoveryPoint,
    maps: Vec<BlockMap>,
    /// The blocks read last, newest first.
    cache: Mutex<Vec<(ChunkId, Arc<Vec<u8>>)>>,
}

/// One block of one disk: where it lies and what it must hash to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockRef {
    pub(crate) index: usize,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) id: ChunkId,
}

impl BlockRef {
    pub(crate) fn of(map: &BlockMap, index: usize) -> BlockRef {
        BlockRef {
            index,
            offset: map.offset_of(index),
            len: map.len_of(index),
            id: map.get(index).unwrap_or(ChunkId::ZERO),
        }
    }
}

impl Repository {
    /// A reader over `point` of this repository: reads the block map of every disk, checked
    /// against the digest the record names.
    pub async fn reader(&self, point: RecoveryPoint) -> Result<PointReader> {
        let mut maps = Vec::with_capacity(point.disks.len());
        for disk in &point.disks {
            let map = self
                .store()
                .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await?;
            maps.push(map);
        }
        Ok(PointReader {
            store: self.store().clone(),
            point,
            maps,
            cache: Mutex::new(Vec::with_capacity(CACHED_BLOCKS)),
        })
    }
}

impl PointReader {
    pub fn point(&self) -> &RecoveryPoint {
        &self.point
    }

    /// The block map of every disk of the point, in the point's disk order.
    pub fn maps(&self) -> &[BlockMap] {
        &self.maps
    }

    /// The codec its blocks are identified and decoded with: its repository's.
    pub fn codec(&self) -> &ChunkCodec {
        self.store.codec()
    }

    /// Gives the point and its maps back.
    pub fn into_parts(self) -> (RecoveryPoint, Vec<BlockMap>) {
        (self.point, self.maps)
    }

    /// `len` bytes of disk `disk` (its position in the point) from byte `offset`, every block
    /// they touch verified; [`Error::OutOfRange`] past the disk's end.
    pub async fn read_at(&self, disk: usize, offset: u64, len: usize) -> Result<Vec<u8>> {
        let out_of_range = || Error::OutOfRange {
            point: self.point.id.to_string(),
            disk,
            offset,
            len,
        };
        let map = self.maps.get(disk).ok_or_else(out_of_range)?;
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= map.disk_size())
            .ok_or_else(out_of_range)?;
        let mut out = vec![0u8; len];
        let block_size = map.block_size().bytes();
        let mut at = offset;
        while at < end {
            let index = (at / block_size) as usize;
            let block = BlockRef::of(map, index);
            let from = (at - block.offset) as usize;
            let upto = ((end - block.offset) as usize).min(block.len);
            let into = (at - offset) as usize;
            if !block.id.is_zero() {
                let data = self.cached_block(disk, block).await?;
                out[into..into + (upto - from)].copy_from_slice(&data[from..upto]);
            }
            at = block.offset + upto as u64;
        }
        Ok(out)
    }

    /// Block `block` of disk `disk`, decoded and verified, from the cache or fetched into it.
    async fn cached_block(&self, disk: usize, block: BlockRef) -> Result<Arc<Vec<u8>>> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = cache.iter().position(|(id, _)| *id == block.id) {
                let hit = cache.remove(at);
                let data = Arc::clone(&hit.1);
                cache.insert(0, hit);
                return Ok(data);
            }
        }
        let data = Arc::new(self.with_block(disk, block, |buf| Ok(buf.to_vec())).await?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(0, (block.id, Arc::clone(&data)));
        cache.truncate(CACHED_BLOCKS);
        Ok(data)
    }

    /// The verified block path: fetches block `block` of disk `disk`, decodes it and checks it
    /// against its id and length on the CPU bridge, and hands the content to `then` there. On
    /// a replicated repository a corrupt primary copy is replaced by the secondary's (checked
    /// the same way) and healed.
    pub(crate) async fn with_block<R, F>(&self, disk: usize, block: BlockRef, then: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&[u8]) -> Result<R> + Clone + Send + 'static,
    {
        let name = self.disk_name(disk);
        let encoded = self
            .store
            .get_chunk(&block.id)
            .await
            .map_err(|source| block_error(&name, block, source))?;
        let first = {
            let (codec, name, then) = (self.store.codec().clone(), name.clone(), then.clone());
            cpu::run(move || decode_then(&codec, &name, block, &encoded, then)).await
        };
        match first {
            // A replicated repository has another copy: verified, used, healed.
            Err(Error::Block { source, .. })
                if self.store.is_replicated()
                    && matches!(*source, blockvault_store::Error::ChunkCorrupt { .. }) =>
            {
                let good = self
                    .store
                    .chunk_from_replica(&block.id, *source)
                    .await
                    .map_err(|source| block_error(&name, block, source))?;
                let codec = self.store.codec().clone();
                cpu::run(move || decode_then(&codec, &name, block, &good, then)).await
            }
            other => other,
        }
    }

    fn disk_name(&self, disk: usize) -> DiskName {
        self.point.disks[disk].name.clone()
    }
}

fn block_error(disk: &DiskName, block: BlockRef, source: blockvault_store::Error) -> Error {
    Error::Block {
        disk: disk.clone(),
        index: block.index,
        offset: block.offset,
        id: block.id,
        source: Box::new(source),
    }
}

/// Decodes one chunk with `codec` and verifies it (its id, and the length its map says), then
/// hands the content to `then`.
fn decode_then<R>(
    codec: &ChunkCodec,
    disk: &DiskName,
    block: BlockRef,
    encoded: &Bytes,
    then: impl Fn(&[u8]) -> Result<R>,
) -> Result<R> {
    let corrupt = |source| {
        let source = blockvault_store::Error::ChunkCorrupt {
            id: block.id,
            source,
        };
        block_error(disk, block, source)
    };
    crate::decode::verified(codec, encoded, block.id, corrupt, |buf| {
        if buf.len() != block.len {
            return Err(Error::BlockLength {
                disk: disk.clone(),
                index: block.index,
                offset: block.offset,
                expected: block.len,
                actual: buf.len(),
            });
        }
        then(buf)
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use blockvault_core::{BlockSize, Consistency};

    use super::*;
    use crate::{BackupRequest, NoProgress, TransferOptions};

    const BS: usize = 64 << 10;

    /// A disk of 10 blocks and a tail of 1000 bytes: data, a zero block, a hole, data again.
    fn image(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut data = vec![0u8; 10 * BS + 1000];
        for (i, byte) in data.iter_mut().enumerate() {
            let block = i / BS;
            if block != 3 && block != 6 {
                *byte = (i % 251) as u8 ^ (block as u8);
            }
        }
        let path = dir.join("disk.img");
        std::fs::write(&path, &data).expect("write image");
        (path, data)
    }

    async fn backed_up(dir: &Path) -> (Repository, RecoveryPoint, Vec<u8>) {
        let repo = Repository::init_local(dir.join("repo"))
            .await
            .expect("repo");
        let (disk, data) = image(dir);
        let request = BackupRequest {
            vm: "vm".parse().expect("vm"),
            disks: vec![disk.into()],
            block_size: Some(BlockSize::new(BS as u64).expect("bs")),
            consistency: Consistency::CrashConsistent,
            capture: None,
            options: TransferOptions::default(),
            time: None,
            retain_until: None,
            id: None,
            vault: None,
        };
        let point = repo
            .backup(&request, Arc::new(NoProgress))
            .await
            .expect("backup")
            .point;
        (repo, point, data)
    }

    #[tokio::test]
    async fn read_at_returns_any_range_of_a_disk_as_it_was_backed_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, point, data) = backed_up(dir.path()).await;
        let reader = repo.reader(point).await.expect("reader");
        let len = data.len() as u64;
        let ranges: &[(u64, usize)] = &[
            (0, 0),
            (0, 4096),
            (100, 10),
            (BS as u64 - 7, 20),
            (3 * BS as u64 - 1, BS + 2),
            (5 * BS as u64 + 3, 2 * BS),
            (len - 1000, 1000),
            (len - 1, 1),
            (0, data.len()),
        ];
        for &(offset, n) in ranges {
            let got = reader.read_at(0, offset, n).await.expect("read");
            let at = offset as usize;
            assert_eq!(got, &data[at..at + n], "{offset}+{n}");
        }
        assert!(matches!(
            reader.read_at(0, len - 10, 11).await,
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            reader.read_at(1, 0, 1).await,
            Err(Error::OutOfRange { .. })
        ));
    }

    #[tokio::test]
    async fn read_at_refuses_a_chunk_that_does_not_hash_to_its_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, point, _) = backed_up(dir.path()).await;
        let reader = repo.reader(point).await.expect("reader");
        let id = reader.maps()[0].get(2).expect("block 2");
        let other = reader.maps()[0].get(1).expect("block 1");
        // Block 2's chunk replaced by block 1's bytes: it decodes, but to the wrong content.
        let wrong = repo.store().get_chunk(&other).await.expect("chunk");
        repo.store().put_chunk(&id, wrong).await.expect("put");
        let read = reader.read_at(0, 2 * BS as u64 + 5, 10).await;
        assert!(
            matches!(&read, Err(Error::Block { index: 2, .. })),
            "{read:?}"
        );
        // Other blocks still read.
        reader.read_at(0, 0, BS).await.expect("block 0");
    }
}
