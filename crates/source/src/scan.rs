use std::ops::Range;

use blockvault_core::{BlockMap, BlockSize, ChunkId};
use jiff::Timestamp;
use rayon::prelude::*;

use crate::{DiskImage, Error, Result};

/// Blocks hashed per batch of a scan (see [`Chunker::scan_blocks`]).
const SCAN_BATCH: usize = 4096;

/// The blocks of a disk image that hold data, as ascending runs of block numbers: a disk whose
/// million data blocks lie in a few extents costs a few runs, not a list of a million numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataBlocks {
    runs: Vec<Range<usize>>,
    len: usize,
}

impl DataBlocks {
    /// Blocks `first..=last`, after every block added so far but for those it already has
    /// (neighbouring extents may share a block).
    fn add(&mut self, first: usize, last: usize) {
        let from = match self.runs.last() {
            Some(run) => first.max(run.end),
            None => first,
        };
        if from > last {
            return;
        }
        self.len += last + 1 - from;
        match self.runs.last_mut() {
            Some(run) if run.end == from => run.end = last + 1,
            _ => self.runs.push(from..last + 1),
        }
    }

    /// Blocks in all.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs.iter().flat_map(Clone::clone)
    }
}

/// One block read from a disk image, as the scan hands it to its visitor.
#[derive(Debug)]
pub struct Block<'a> {
    /// Position of the block in the disk, in blocks.
    pub index: usize,
    /// Byte offset of the block in the disk.
    pub offset: u64,
    /// [`ChunkId::ZERO`] for an all-zero block, BLAKE3 of `data` otherwise.
    pub id: ChunkId,
    /// The block's bytes (shorter than the block size only for the last block of a disk).
    pub data: &'a [u8],
}

/// Splits a disk image into fixed blocks and identifies each one.
///
/// Blocks wholly inside holes (found with `SEEK_DATA`/`SEEK_HOLE`) are zero without being read;
/// blocks that are read are checked for all-zero content before any hashing; the rest are hashed
/// with BLAKE3, several blocks at once on the rayon pool, each worker reusing one buffer.
#[derive(Clone, Copy, Debug)]
pub struct Chunker {
    block_size: BlockSize,
}

impl Chunker {
    pub fn new(block_size: BlockSize) -> Chunker {
        Chunker { block_size }
    }

    pub fn block_size(&self) -> BlockSize {
        self.block_size
    }

    /// The blocks that overlap the image's data extents, ascending. All other blocks lie in
    /// holes.
    pub fn data_blocks(&self, image: &DiskImage) -> Result<DataBlocks> {
        let bs = self.block_size.bytes();
        let mut blocks = DataBlocks::default();
        for extent in image.data_extents()? {
            blocks.add(
                (extent.start / bs) as usize,
                ((extent.end - 1) / bs) as usize,
            );
        }
        Ok(blocks)
    }

    /// Reads every data block of `image`, calls `visit` with each one (on rayon workers, in no
    /// particular order), and returns the image's block map stamped `created`.
    ///
    /// The first error, from the image or from `visit`, stops the scan and is returned. The
    /// image's size is checked again at the end, so a disk that grew or shrank while it was
    /// read never yields a map.
    pub fn scan<E, F>(&self, image: &DiskImage, created: Timestamp, visit: F) -> Result<BlockMap, E>
    where
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
    {
        let blocks = self.data_blocks(image)?;
        self.scan_blocks(image, &blocks, created, visit)
    }

    /// [`Chunker::scan`] over blocks the caller already got from [`Chunker::data_blocks`]; every
    /// other block is recorded as zero.
    pub fn scan_blocks<E, F>(
        &self,
        image: &DiskImage,
        blocks: &DataBlocks,
        created: Timestamp,
        visit: F,
    ) -> Result<BlockMap, E>
    where
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
    {
        let bs = self.block_size.bytes();
        let size = image.size();
        let mut map = BlockMap::zeroed(size, self.block_size, created);
        map.reserve(blocks.len());
        // In batches, each hashed in parallel and then written into the map: a disk of a
        // million blocks holds no list of a million (index, id) pairs beside its map. The
        // batches are large enough that the workers seldom wait at their ends.
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
                    image.read_exact_at(buf, offset)?;
                    let id = ChunkId::of(buf);
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
                map.set(index, id);
            }
        }
        image.check_size_unchanged()?;
        map.shrink_to_fit();
        Ok(map)
    }

    /// Bytes a scan of `blocks` reads: their lengths, the last one possibly short.
    pub fn bytes_of(&self, image: &DiskImage, blocks: &DataBlocks) -> u64 {
        let bs = self.block_size.bytes();
        blocks
            .iter()
            .map(|i| (image.size().saturating_sub(i as u64 * bs)).min(bs))
            .sum()
    }

    /// The block map of `image`, without visiting blocks.
    pub fn map(&self, image: &DiskImage, created: Timestamp) -> Result<BlockMap> {
        self.scan(image, created, |_| Ok::<(), Error>(()))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    use proptest::prelude::*;

    use super::*;
    use crate::changed_blocks;

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
    fn data_blocks_join_neighbouring_extents_and_count_a_shared_block_once() {
        let mut blocks = DataBlocks::default();
        for (first, last) in [(0, 2), (2, 3), (5, 5), (5, 7), (6, 6), (9, 9)] {
            blocks.add(first, last);
        }
        assert_eq!(
            blocks.iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 5, 6, 7, 9]
        );
        assert_eq!(blocks.len(), 8);
        assert_eq!(blocks.runs, vec![0..4, 5..8, 9..10]);
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
        let img = DiskImage::open(dir.path().join("a.img")).expect("open");
        let seen = std::sync::Mutex::new(Vec::new());
        let map = Chunker::new(bs)
            .scan(&img, Timestamp::UNIX_EPOCH, |b| {
                seen.lock().expect("lock").push(b.index);
                Ok::<(), Error>(())
            })
            .expect("scan");
        let mut seen = seen.into_inner().expect("lock");
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 4, 5]);
        assert_eq!(map.data_blocks(), 3);
        let err = Chunker::new(bs)
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
        let img = DiskImage::open(dir.path().join("wide.img")).expect("open");
        let map = Chunker::new(bs)
            .map(&img, Timestamp::UNIX_EPOCH)
            .expect("map");
        for &b in &blocks {
            let b = b as usize;
            let block = &content[b * (64 << 10)..(b + 1) * (64 << 10)];
            assert_eq!(map.get(b), Some(ChunkId::of(block)), "block {b}");
        }
        assert_eq!(map.data_blocks(), blocks.len());
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
            let img = DiskImage::open(dir.path().join("d.img")).expect("open");
            let map = Chunker::new(bs).map(&img, Timestamp::UNIX_EPOCH).expect("map");
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
            let chunker = Chunker::new(bs);
            let old = chunker.map(&DiskImage::open(dir.path().join("old.img")).expect("open"), Timestamp::UNIX_EPOCH).expect("map");
            let new = chunker.map(&DiskImage::open(dir.path().join("new.img")).expect("open"), Timestamp::UNIX_EPOCH).expect("map");
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
