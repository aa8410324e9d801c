use blockvault_core::{BlockMap, BlockSize, ChunkCodec, ChunkId};
use jiff::Timestamp;
use rayon::prelude::*;

use crate::{BlockSource, DataBlocks, Error, Result};

/// Blocks hashed per batch of a scan (see [`Chunker::scan_blocks`]).
const SCAN_BATCH: usize = 4096;

/// One block read from a disk, as the scan hands it to its visitor.
#[derive(Debug)]
pub struct Block<'a> {
    /// Position of the block in the disk, in blocks.
    pub index: usize,
    /// Byte offset of the block in the disk.
    pub offset: u64,
    /// The block's id from the chunker's codec: [`ChunkId::ZERO`] for an all-zero block, the
    /// digest of `data` otherwise.
    pub id: ChunkId,
    /// The block's bytes (shorter than the block size only for the last block of a disk).
    pub data: &'a [u8],
}

/// Splits a disk into fixed blocks and identifies each one.
///
/// Blocks wholly outside the source's data extents (holes) are zero without being read; every
/// block read gets its id from the chunker's [`ChunkCodec`] (the repository's: the one place
/// ids are computed), which recognises all-zero content before any hashing and hashes the rest
/// (BLAKE3 for the plain codec), several blocks at once on the rayon pool, each worker reusing
/// one buffer.
///
/// Every scan takes any [`BlockSource`], statically dispatched (`&RawFile`) or not
/// (`&dyn BlockSource`): a call per block costs nothing next to reading and hashing it.
#[derive(Clone, Debug)]
pub struct Chunker {
    block_size: BlockSize,
    codec: ChunkCodec,
}

impl Chunker {
    /// A chunker of `block_size` blocks whose ids are `codec`'s.
    pub fn new(block_size: BlockSize, codec: ChunkCodec) -> Chunker {
        Chunker { block_size, codec }
    }

    pub fn block_size(&self) -> BlockSize {
        self.block_size
    }

    /// The codec that computes the ids.
    pub fn codec(&self) -> &ChunkCodec {
        &self.codec
    }

    /// The blocks that overlap the source's data extents, ascending. All other blocks lie in
    /// holes.
    pub fn data_blocks<S: BlockSource + ?Sized>(&self, source: &S) -> Result<DataBlocks> {
        Ok(DataBlocks::covering(
            source.data_extents()?,
            self.block_size,
            source.size(),
        ))
    }

    /// Reads every data block of `source`, calls `visit` with each one (on rayon workers, in no
    /// particular order), and returns the disk's block map stamped `created`.
    ///
    /// The first error, from the source or from `visit`, stops the scan and is returned. The
    /// source's size is checked again at the end, so a disk that grew or shrank while it was
    /// read never yields a map.
    pub fn scan<S, E, F>(&self, source: &S, created: Timestamp, visit: F) -> Result<BlockMap, E>
    where
        S: BlockSource + ?Sized,
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
    {
        let blocks = self.data_blocks(source)?;
        self.scan_blocks(source, &blocks, created, visit)
    }

    /// [`Chunker::scan`] over blocks the caller already got from [`Chunker::data_blocks`]; every
    /// other block is recorded as zero.
    pub fn scan_blocks<S, E, F>(
        &self,
        source: &S,
        blocks: &DataBlocks,
        created: Timestamp,
        visit: F,
    ) -> Result<BlockMap, E>
    where
        S: BlockSource + ?Sized,
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
    {
        let mut map = BlockMap::zeroed(source.size(), self.block_size, created);
        map.reserve(blocks.len());
        self.read_blocks(source, blocks, visit, |index, id| map.set(index, id))?;
        map.shrink_to_fit();
        Ok(map)
    }

    /// Reads, checks and hashes `blocks` of `source`, hands each to `visit` (on rayon workers,
    /// in no particular order), then gives each id to `put`, in ascending block order. Checks
    /// the source's size once everything is read.
    pub(crate) fn read_blocks<S, E, F, P>(
        &self,
        source: &S,
        blocks: &DataBlocks,
        visit: F,
        mut put: P,
    ) -> Result<(), E>
    where
        S: BlockSource + ?Sized,
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
        P: FnMut(usize, ChunkId),
    {
        let bs = self.block_size.bytes();
        let size = source.size();
        // In batches, each hashed in parallel and then handed on: a disk of a million blocks
        // holds no list of a million (index, id) pairs beside its map. The batches are large
        // enough that the workers seldom wait at their ends.
        let mut indices = blocks.iter();
        let mut batch = Vec::with_capacity(SCAN_BATCH.min(blocks.len()));
        loop {
            batch.clear();
            batch.extend(indices.by_ref().take(SCAN_BATCH));
            if batch.is_empty() {
                break;
            }
            let ids = batch
                .par_iter()
                .map_init(Vec::new, |buf: &mut Vec<u8>, &index| {
                    let offset = index as u64 * bs;
                    let len = (size - offset).min(bs) as usize;
                    buf.resize(len, 0);
                    read_exact(source, offset, buf)?;
                    let id = self.codec.id(buf);
                    visit(Block {
                        index,
                        offset,
                        id,
                        data: buf,
                    })?;
                    Ok(id)
                })
                .collect::<Result<Vec<ChunkId>, E>>()?;
            for (&index, id) in batch.iter().zip(ids) {
                put(index, id);
            }
        }
        check_size_unchanged(source)?;
        Ok(())
    }

    /// Bytes a scan of `blocks` reads: their lengths, the last one possibly short.
    pub fn bytes_of<S: BlockSource + ?Sized>(&self, source: &S, blocks: &DataBlocks) -> u64 {
        let bs = self.block_size.bytes();
        let size = source.size();
        blocks
            .iter()
            .map(|i| (size.saturating_sub(i as u64 * bs)).min(bs))
            .sum()
    }

    /// The block map of `source`, without visiting blocks.
    pub fn map<S: BlockSource + ?Sized>(&self, source: &S, created: Timestamp) -> Result<BlockMap> {
        self.scan(source, created, |_| Ok::<(), Error>(()))
    }
}

/// Fills `buf` from `offset`. A source that ends first shrank under the scan: that is
/// [`Error::Truncated`] (where it ended), never a block of zeros.
fn read_exact<S: BlockSource + ?Sized>(source: &S, offset: u64, buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match source.read_at(at, &mut buf[done..])? {
            0 => {
                return Err(Error::Truncated {
                    path: source.path().to_owned(),
                    offset: at,
                    size: source.size(),
                });
            }
            n => done += n,
        }
    }
    Ok(())
}

/// Fails with [`Error::SizeChanged`] when the source is no longer the size it had when opened.
fn check_size_unchanged<S: BlockSource + ?Sized>(source: &S) -> Result<()> {
    let now = source.current_size()?;
    if now != source.size() {
        return Err(Error::SizeChanged {
            path: source.path().to_owned(),
            before: source.size(),
            after: now,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    use proptest::prelude::*;

    use super::*;
    use crate::{RawFile, changed_blocks};

    /// A sparse image of `size` bytes with `writes` (offset, len, byte) applied; returns its
    /// full contents too, so tests can compute what the map must be the slow, obvious way.
    fn image(dir: &std::path::Path, name: &str, size: u64, writes: &[(u64, usize, u8)]) -> Vec<u8> {
        let path = dir.join(name);
        let f = File::create(&path).expect("create");
        f.set_len(size).expect("len");
        let mut content = vec![0u8; size as usize];
        for &(offset, len, byte) in writes {
            let offset = offset % size.max(1);
            let len = len.min((size - offset) as usize);
            let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8 & 3)).collect();
            f.write_all_at(&data, offset).expect("write");
            content[offset as usize..offset as usize + len].copy_from_slice(&data);
        }
        content
    }

    fn naive_ids(content: &[u8], bs: BlockSize) -> Vec<ChunkId> {
        content.chunks(bs.as_usize()).map(ChunkId::of).collect()
    }

    #[test]
    fn visitor_sees_every_data_block_once_and_errors_stop_the_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bs = BlockSize::new(64 << 10).expect("bs");
        image(
            dir.path(),
            "a.img",
            1 << 20,
            &[(0, 100, 1), (300_000, 70_000, 2)],
        );
        let img = RawFile::open(dir.path().join("a.img")).expect("open");
        let seen = std::sync::Mutex::new(Vec::new());
        let map = Chunker::new(bs, ChunkCodec::plain())
            .scan(&img, Timestamp::UNIX_EPOCH, |b| {
                seen.lock().expect("lock").push(b.index);
                Ok::<(), Error>(())
            })
            .expect("scan");
        let mut seen = seen.into_inner().expect("lock");
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 4, 5]);
        assert_eq!(map.data_blocks(), 3);
        let err = Chunker::new(bs, ChunkCodec::plain())
            .scan(&img, Timestamp::UNIX_EPOCH, |b| {
                if b.index == 4 {
                    Err(Error::NotFound {
                        path: "stop".into(),
                    })
                } else {
                    Ok(())
                }
            })
            .expect_err("visitor error");
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[test]
    fn blocks_on_either_side_of_a_batch_boundary_land_in_their_own_slots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bs = BlockSize::new(64 << 10).expect("bs");
        let blocks = [0u64, 4095, 4096, 4097, 2 * 4096 + 7];
        let writes: Vec<(u64, usize, u8)> = blocks
            .iter()
            .enumerate()
            .map(|(k, &b)| (b * (64 << 10) + 10, 1000, k as u8 + 1))
            .collect();
        let size = (2 * 4096 + 9) * (64 << 10);
        let content = image(dir.path(), "wide.img", size, &writes);
        let img = RawFile::open(dir.path().join("wide.img")).expect("open");
        let map = Chunker::new(bs, ChunkCodec::plain())
            .map(&img, Timestamp::UNIX_EPOCH)
            .expect("map");
        for &b in &blocks {
            let b = b as usize;
            let block = &content[b * (64 << 10)..(b + 1) * (64 << 10)];
            assert_eq!(map.get(b), Some(ChunkId::of(block)), "block {b}");
        }
        assert_eq!(map.data_blocks(), blocks.len());
    }

    #[test]
    fn a_shrunken_image_is_a_truncation_not_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk.img");
        let f = File::create(&path).expect("create");
        f.write_all_at(&[7u8; 8192], 0).expect("write");
        let image = RawFile::open(&path).expect("open");
        f.set_len(4096).expect("shrink");
        let mut buf = vec![0u8; 8192];
        let err = read_exact(&image, 0, &mut buf).expect_err("short");
        assert!(
            matches!(
                err,
                Error::Truncated {
                    offset: 4096,
                    size: 8192,
                    ..
                }
            ),
            "{err}"
        );
        let err = check_size_unchanged(&image).expect_err("size");
        assert!(
            matches!(
                err,
                Error::SizeChanged {
                    before: 8192,
                    after: 4096,
                    ..
                }
            ),
            "{err}"
        );
        let bs = BlockSize::new(64 << 10).expect("bs");
        let err = Chunker::new(bs, ChunkCodec::plain())
            .map(&image, Timestamp::UNIX_EPOCH)
            .expect_err("scan of a shrunken image");
        assert!(
            matches!(err, Error::Truncated { offset: 4096, .. }),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn scan_matches_a_naive_read(
            shift in 16u32..=18,
            size in 1u64..(3 << 20),
            writes in proptest::collection::vec((any::<u64>(), 1usize..200_000, 1u8..=255), 0..8),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let bs = BlockSize::new(1 << shift).expect("bs");
            let content = image(dir.path(), "d.img", size, &writes);
            let img = RawFile::open(dir.path().join("d.img")).expect("open");
            let map = Chunker::new(bs, ChunkCodec::plain()).map(&img, Timestamp::UNIX_EPOCH).expect("map");
            prop_assert_eq!(map.disk_size(), size);
            prop_assert_eq!(map.iter().collect::<Vec<_>>(), naive_ids(&content, bs));
        }

        #[test]
        fn diff_is_exactly_the_blocks_that_differ(
            shift in 16u32..=17,
            size in 1u64..(2 << 20),
            base in proptest::collection::vec((any::<u64>(), 1usize..100_000, 1u8..=255), 0..6),
            churn in proptest::collection::vec((any::<u64>(), 1usize..50_000, 0u8..=255), 0..6),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let bs = BlockSize::new(1 << shift).expect("bs");
            let before = image(dir.path(), "old.img", size, &base);
            let mut all = base.clone();
            all.extend(churn);
            let after = image(dir.path(), "new.img", size, &all);
            let chunker = Chunker::new(bs, ChunkCodec::plain());
            let old = chunker.map(&RawFile::open(dir.path().join("old.img")).expect("open"), Timestamp::UNIX_EPOCH).expect("map");
            let new = chunker.map(&RawFile::open(dir.path().join("new.img")).expect("open"), Timestamp::UNIX_EPOCH).expect("map");
            let truly: Vec<usize> = before
                .chunks(bs.as_usize())
                .zip(after.chunks(bs.as_usize()))
                .enumerate()
                .filter(|(_, (a, b))| a != b && b.iter().any(|&x| x != 0))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(changed_blocks(Some(&old), &new).collect::<Vec<_>>(), truly);
        }
    }
}
